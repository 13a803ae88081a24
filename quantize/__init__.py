"""codefill.quantize"""
