"""pymgmt.events"""
