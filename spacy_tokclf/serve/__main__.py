"""`python -m spacy_tokclf.serve MODEL [--port 8080] ...`: see app.main."""
from .app import main

if __name__ == "__main__":
    main()
