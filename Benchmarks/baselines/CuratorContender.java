// One contender of Apache Curator's LeaderLatch (a baseline of Benchmarks/failover-bench.sh).
//
//   java -cp <curator jars>:<dir> CuratorContender ZK_CONNECT PATH ID SESSION_TIMEOUT_MS
//
// Prints "<epoch_ms> ready ID" once its latch has its znode, "<epoch_ms> leader ID" when Curator
// calls isLeader(). SIGTERM: the JVM's shutdown hook closes the latch (deletes its znode) and the
// client (graceful path). SIGKILL: the session expires on the server after the session timeout.
import java.util.concurrent.CountDownLatch;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.leader.LeaderLatchListener;
import org.apache.curator.retry.ExponentialBackoffRetry;

public class CuratorContender {
    static synchronized void say(String text) {
        System.out.println(System.currentTimeMillis() + " " + text);
        System.out.flush();
    }

    public static void main(String[] args) throws Exception {
        String connect = args[0], path = args[1], id = args[2];
        int sessionTimeoutMs = Integer.parseInt(args[3]);
        CuratorFramework client = CuratorFrameworkFactory.builder()
            .connectString(connect)
            .sessionTimeoutMs(sessionTimeoutMs)
            .connectionTimeoutMs(Math.max(1000, sessionTimeoutMs))
            .retryPolicy(new ExponentialBackoffRetry(100, 10))
            .build();
        client.start();
        client.blockUntilConnected();
        LeaderLatch latch = new LeaderLatch(client, path, id);
        latch.addListener(new LeaderLatchListener() {
            @Override public void isLeader() { say("leader " + id); }
            @Override public void notLeader() { say("notleader " + id); }
        });
        CountDownLatch done = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                latch.close();
                client.close();
                say("stopped " + id);
            } catch (Exception e) {
                say("stop-failed " + id + " " + e);
            }
            done.countDown();
        }));
        latch.start();
        long deadline = System.currentTimeMillis() + 30000;
        while (latch.getOurPath() == null && System.currentTimeMillis() < deadline) Thread.sleep(5);
        say("ready " + id);
        done.await();
    }
}
