"""codefill.cli"""
