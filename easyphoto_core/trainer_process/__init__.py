"""Training as the core sees it: the job file, the trainer's events, and the subprocess driver.

The trainer itself lives in easyphoto_train (run as `python -m easyphoto_train`); the core never
imports it, it only writes the job file and reads the JSON-lines events.
"""
