"""The etcd World: an embedded etcd server and a client World over it.

`server.EtcdServer` runs the agent's own etcd member as a supervised child
process; `client.EtcdWorld` is the `World` over any etcd cluster (aetcd, so
gRPC, is imported only when it connects). Nothing here is imported by the
single-host path.
"""
