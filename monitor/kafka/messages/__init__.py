"""Apache Kafka message schemas kafka-python 3.0.12 does not ship, copied verbatim from
Apache Kafka (clients/src/main/resources/common/message/, Apache License 2.0). Only
:mod:`monitor.kafka.adapter` reads them, to build its request and response classes."""
