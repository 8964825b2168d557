"""Feedback intake: reading what comes back after mail left (DSN and non-standard bounces,
ARF complaints, auto-replies) and the inbound listener that receives it. The modules here
read bytes and make no database query; sending/services/feedback.py acts on what they read.
"""
