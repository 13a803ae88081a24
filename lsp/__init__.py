"""codefill.lsp"""
