"""pymgmt.report"""
