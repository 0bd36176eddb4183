"""pymgmt.cli"""
