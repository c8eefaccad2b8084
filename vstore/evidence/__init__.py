"""Evidence: the node's signing keys, signed export packages and their offline verification."""
