"""Local stand-ins for the services dmflow talks to, speaking their real wire protocols.

They serve dmflow's tests and benchmarks alike (on 127.0.0.1 only); nothing in dmflow's
own code paths imports them.
"""
