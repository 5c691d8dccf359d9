"""Structured reports (PS3.3 C.17): the content tree as a page and an outline.
"""
