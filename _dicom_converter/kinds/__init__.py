"""One module per kind of object, each a writer for the dispatch table in `convert`.

A kind imports the layers below it, never another kind.
"""
