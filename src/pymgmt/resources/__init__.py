"""pymgmt.resources"""
