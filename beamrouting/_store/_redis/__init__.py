"""_store/_redis"""
