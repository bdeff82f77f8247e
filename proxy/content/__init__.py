"""Real-time content analysis: score a page's text against weighted phrase lists.

Lists only know sites someone already categorised; this scores what a page
actually says (e2guardian's "weighted phrases"), so a page no list knows can
still be blocked for the groups the policy asks it for. ``phrases`` loads and
compiles the school's phrase file, ``extract`` turns an HTML or text body into
the words a reader sees. Nothing here imports mitmproxy: ``addons/content.py``
reads the flow and calls in.
"""
