"""The pure core: cluster records, the node snapshot, actions, and the decisions over them.

Nothing in this package performs I/O or reads a clock; time is a number passed in.
"""
