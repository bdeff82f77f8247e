"""The core of Schoolgate: policy, identity, the decision, and the command line.

Nothing here imports mitmproxy except ``proxy.master``, which builds and
starts the proxy; everything else can be tested without one.
"""
