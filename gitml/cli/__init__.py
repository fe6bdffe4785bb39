"""The ``gitml`` command line: parse, call one API function, format."""
