"""dmflow core: everything that is not Prefect.

Models, status rules, the run store, settings and the embedded database live
here so they can be used (and tested) without the workflow engine.
"""

__version__ = "0.1.0"
