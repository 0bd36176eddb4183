"""pymgmt.graph"""
