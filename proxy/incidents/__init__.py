"""Incidents and safeguarding: what happens after someone reaches for unacceptable content.

The room holds the pure parts (escalation tables, search-term capture, the
roll-up rule, the keyed hash for illegal URLs), the incident store and its
review record, alerts, and the termly report for governors. Nothing here
imports mitmproxy; ``addons/incidents.py`` feeds it from the proxy.
"""
