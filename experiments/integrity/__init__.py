"""Guards on what the project writes and reads, one job per module: no output replaces an input or an
existing file unasked (:mod:`.outputs`), files replaced atomically (:mod:`.atomic`), arrays checked for
NaN and inf (:mod:`.finite`), JSON kept strict and portable (:mod:`.json_files`).

Imports nothing itself, so that each user pulls in only the guard it needs.
"""
