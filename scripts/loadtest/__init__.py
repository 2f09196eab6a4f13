"""Load tests of the served pipeline: concurrent answers equal sequential
nlp() and bad requests get a 4xx (loadtest.py, with client.py and texts.py),
and the server's memory over a long run of new words (memory_run.py)."""
