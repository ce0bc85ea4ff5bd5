"""_runtime/_mailbox"""
