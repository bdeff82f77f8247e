"""Blocklists: list formats, URL normalisation, the index and its matcher.

This room imports nothing from the rest of Schoolgate and nothing from
mitmproxy: it turns list files into an index and answers "which lists hold
this URL, and by which entry".
"""
