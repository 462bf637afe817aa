"""The warm agent: one long-lived process serving plugin requests over a unix socket.

A plugin exec pays the interpreter and its imports every time (pyroute2 alone ~150 ms); the agent
pays them once, and the plugin executables become thin clients that forward ``(env, stdin)``.
"""
