"""tether: release, promote, deploy and roll back the whole model tuple as one unit."""

__version__ = "0.1.0"
