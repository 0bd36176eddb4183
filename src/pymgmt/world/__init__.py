"""pymgmt.world"""
