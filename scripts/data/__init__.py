"""The project's data: copy and checksum the assets (get_data.py), convert
CoNLL-2003 and CoNLL-U to .spacy (convert_conll03.py, convert_conllu.py)."""
