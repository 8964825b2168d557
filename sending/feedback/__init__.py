"""Feedback intake: reading what comes back after mail left (DSN and non-standard bounces,
ARF complaints, auto-replies) and the inbound listener that receives it. The modules here
read bytes and make no database query; sending/services/inbound.py and feedback.py act on
what they read.
"""
