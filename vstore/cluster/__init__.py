"""Many nodes, one city: membership and camera ownership on etcd (docs/design/cluster.md)."""
