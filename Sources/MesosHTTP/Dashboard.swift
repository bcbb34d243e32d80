/// The dashboard at `/`: one static page, served by every master, nothing fetched from anywhere
/// but the masters themselves. It polls `/master/state` every second at the master it last
/// found leading (a standby answers 307 to the leader, which `fetch` follows); when that master
/// stops answering it tries the others it knows (the page's own master, every leader in the
/// history, and `?masters=host:port,...`), so it follows the leader across a failover.
public enum Dashboard {
    public static let html = #"""
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Mesos master</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f5f6f8; color: #1d2330; }
  header { background: #1d2330; color: #fff; padding: 10px 20px; display: flex; gap: 28px; align-items: baseline; flex-wrap: wrap; }
  header h1 { font-size: 18px; margin: 0; }
  header .v { font-weight: 600; }
  main { padding: 12px 20px; }
  section { background: #fff; border: 1px solid #dde1e7; border-radius: 6px; margin-bottom: 14px; padding: 8px 14px; }
  h2 { font-size: 15px; margin: 4px 0 8px; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eef0f3; font-variant-numeric: tabular-nums; }
  th { color: #5b6475; font-weight: 600; }
  .ok { color: #1a7f37; } .bad { color: #c62828; } .warn { color: #b26a00; }
  #status { font-size: 12px; opacity: .8; }
</style>
</head>
<body>
<header>
  <h1>Mesos</h1>
  <div>leader <span class="v" id="leader">?</span></div>
  <div>epoch <span class="v" id="epoch">?</span></div>
  <div>agents <span class="v" id="agent-count">0</span></div>
  <div>frameworks <span class="v" id="framework-count">0</span></div>
  <div>tasks <span class="v" id="task-count">0</span></div>
  <div id="status">connecting</div>
</header>
<main>
  <section><h2>Failover history</h2>
    <table id="history"><thead><tr><th>epoch</th><th>leader</th><th>seen at</th></tr></thead><tbody></tbody></table></section>
  <section><h2>Agents</h2>
    <table id="agents"><thead><tr><th>id</th><th>host</th><th>pid</th><th>health</th><th>cpus</th><th>mem</th><th>active</th></tr></thead><tbody></tbody></table></section>
  <section><h2>Frameworks</h2>
    <table id="frameworks"><thead><tr><th>id</th><th>name</th><th>connected</th><th>active</th><th>tasks</th></tr></thead><tbody></tbody></table></section>
  <section><h2>Tasks</h2>
    <table id="tasks"><thead><tr><th>id</th><th>name</th><th>framework</th><th>agent</th><th>state</th></tr></thead><tbody></tbody></table></section>
</main>
<script>
"use strict";
const known = [location.host];
const extra = new URLSearchParams(location.search).get("masters");
if (extra) for (const m of extra.split(",")) if (m && !known.includes(m)) known.push(m);
let current = location.host;

function remember(host) { if (host && !known.includes(host)) known.push(host); }
function cell(row, text, cls) { const td = row.insertCell(); td.textContent = String(text); if (cls) td.className = cls; }
function fill(id, items, each) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren();
  for (const item of items) each(body.insertRow(), item);
  body.parentElement.dataset.rows = String(items.length);
}
function when(t) { return t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) : ""; }

function render(s, from) {
  document.getElementById("leader").textContent = s.leader || "none";
  document.getElementById("epoch").textContent = s.epoch === null || s.epoch === undefined ? "?" : String(s.epoch);
  const tasks = s.frameworks.flatMap(f => f.tasks);
  document.getElementById("agent-count").textContent = String(s.slaves.length);
  document.getElementById("framework-count").textContent = String(s.frameworks.length);
  document.getElementById("task-count").textContent = String(tasks.length);
  document.getElementById("status").textContent = "from " + from + " at " + new Date().toISOString().slice(11, 19);
  for (const change of s.leader_history || []) if (change.leader) remember(change.leader.hostname + ":" + change.leader.port);
  fill("history", (s.leader_history || []).slice().reverse(), (row, c) => {
    cell(row, c.leader ? c.leader.epoch : "-"); cell(row, c.leader ? c.leader.pid : "no leader", c.leader ? "" : "bad"); cell(row, when(c.at));
  });
  fill("agents", s.slaves, (row, a) => {
    const h = a.health.state;
    cell(row, a.id); cell(row, a.hostname); cell(row, a.pid);
    cell(row, h === "missed_pings" ? h + " (" + a.health.missed_pings + ")" : h, h === "healthy" ? "ok" : h === "missed_pings" ? "bad" : "warn");
    cell(row, a.resources.cpus); cell(row, a.resources.mem); cell(row, a.active ? "yes" : "no");
  });
  fill("frameworks", s.frameworks, (row, f) => {
    cell(row, f.id); cell(row, f.name); cell(row, f.connected ? "yes" : "no", f.connected ? "ok" : "warn");
    cell(row, f.active ? "yes" : "no"); cell(row, f.tasks.length);
  });
  fill("tasks", tasks, (row, t) => {
    cell(row, t.id); cell(row, t.name); cell(row, t.framework_id); cell(row, t.slave_id);
    cell(row, t.state, t.state === "TASK_RUNNING" ? "ok" : "warn");
  });
  document.body.dataset.leader = s.leader || "";
  document.body.dataset.epoch = String(s.epoch);
}

async function poll() {
  const order = [current].concat(known.filter(h => h !== current));
  for (const host of order) {
    try {
      const r = await fetch("//" + host + "/master/state", { cache: "no-store" });
      if (!r.ok) continue;  // 503: no leader known there, or not recovered yet
      const s = await r.json();
      current = new URL(r.url).host;  // after a standby's 307: the leader
      remember(current);
      render(s, current);
      return;
    } catch (e) { /* that master is gone: try the next */ }
  }
  document.getElementById("status").textContent = "no master answers (tried " + order.join(", ") + ")";
}
poll();
setInterval(poll, 1000);
</script>
</body>
</html>
"""#
}
