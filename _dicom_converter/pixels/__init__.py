"""The pixel pipeline: decoding frames and turning stored values into what a viewer shows.
"""
