"""pymgmt.engine"""
