"""pymgmt.frontends"""
