// Lag of a group the way Java lag exporters and autoscalers read it: Kafka's own Admin client,
// listConsumerGroupOffsets (OffsetFetch) and listOffsets(latest). Run as a single-file source:
//   java -cp "<kafka libs>/*" GroupOffsets.java BOOTSTRAP GROUP TOPIC
// Prints one line per partition: "<partition> <committed or -1> <end>".
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;

public class GroupOffsets {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        try (Admin admin = Admin.create(props)) {
            TopicDescription topic =
                admin.describeTopics(java.util.List.of(args[2])).allTopicNames().get().get(args[2]);
            Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
            for (TopicPartitionInfo p : topic.partitions()) {
                latest.put(new TopicPartition(args[2], p.partition()), OffsetSpec.latest());
            }
            Map<TopicPartition, OffsetAndMetadata> committed =
                admin.listConsumerGroupOffsets(args[1]).partitionsToOffsetAndMetadata().get();
            var ends = admin.listOffsets(latest).all().get();
            for (TopicPartition tp : latest.keySet()) {
                OffsetAndMetadata c = committed.get(tp);
                System.out.println(
                    tp.partition() + " " + (c == null ? -1 : c.offset()) + " " + ends.get(tp).offset());
            }
        }
    }
}
