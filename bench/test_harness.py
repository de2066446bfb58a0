"""Tests of the bench harness itself (no load, no contenders): the README block check, the
error-rate rule, feature_cost.py's routes, rotation and budget verdicts, and the TLS probe
against real TLS handshakes on loopback. Run by CI:
    python3 -m unittest discover -s bench -p 'test_*.py'
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402
import feature_cost  # noqa: E402
import readme_block  # noqa: E402
import tlsprobe  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
README = os.path.join(os.path.dirname(HERE), "README.md")


def summary(ok: int, errors: int, rounds: int = 1, detail: dict | None = None) -> dict:
    return {"ok": ok, "errors": errors, "requests": ok + errors, "rounds": rounds,
            "error_detail": detail if detail is not None else ({"status": errors} if errors else {})}


class ErrorRate(unittest.TestCase):
    def results(self, sid: str, **contenders: dict) -> dict:
        return {"scenarios": {sid: {"summary": contenders}}}

    def test_mostly_errors_fails(self):
        bad = B.failures(self.results("h1-keepalive", caddy=summary(ok=10, errors=990)))
        self.assertEqual(len(bad), 1)
        self.assertIn("caddy in h1-keepalive", bad[0])
        self.assertIn("99.0 %", bad[0])

    def test_just_above_one_percent_fails_and_at_one_percent_passes(self):
        self.assertTrue(B.failures(self.results("h2-mux", proxy=summary(ok=9_899, errors=101))))
        self.assertEqual(B.failures(self.results("h2-mux", proxy=summary(ok=9_900, errors=100))), [])

    def test_nothing_answered_fails(self):
        self.assertIn("no successful response", B.failures(self.results("h1-newconn", nginx=summary(0, 0)))[0])

    def test_reset_attack_bystander_errors_fail_ours_only(self):
        res = self.results("h2-reset-attack", haproxy=summary(500, 500), proxy=summary(500, 500))
        bad = B.failures(res)
        self.assertEqual(len(bad), 1)
        self.assertIn("proxy in h2-reset-attack", bad[0])

    def test_reset_attack_peer_that_answers_nothing_is_a_finding_ours_fails(self):
        res = self.results("h2-reset-attack", caddy=summary(0, 800), proxy=summary(0, 800))
        bad = B.failures(res)
        self.assertEqual(len(bad), 1)
        self.assertIn("no successful response from proxy in h2-reset-attack", bad[0])

    def test_hung_load_generator_is_unmeasured_for_peers_and_fails_ours(self):
        hung = summary(0, 0, rounds=3, detail={"h2load_hung": 3})
        res = self.results("h1-1000conns", caddy=hung, proxy=copy.deepcopy(hung))
        bad = B.failures(res)
        self.assertEqual(len(bad), 1)
        self.assertIn("proxy in h1-1000conns", bad[0])


class ReadmeBlock(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        self.readme = os.path.join(self.tmp, "README.md")
        shutil.copy(README, self.readme)

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def test_committed_readme_matches_committed_results(self):
        fresh, diff = readme_block.update(README, check_only=True)
        self.assertTrue(fresh, "README's block is stale: python3 bench/report.py --readme README.md\n" + diff)

    def test_an_edited_figure_is_caught_and_rewritten(self):
        with open(self.readme, encoding="utf-8") as f:
            text = f.read()
        begin = text.index(readme_block.BEGIN)
        row = text.index("| h2-mux |", begin)
        cell_end = text.index(" |", row + len("| h2-mux |"))
        edited = text[:row] + "| h2-mux | 99,999 (1.00)" + text[cell_end:]  # the proxy's figure, hand-edited
        with open(self.readme, "w", encoding="utf-8") as f:
            f.write(edited)
        fresh, diff = readme_block.update(self.readme, check_only=True)
        self.assertFalse(fresh)
        self.assertIn("99,999", diff)
        readme_block.update(self.readme, check_only=False)
        with open(self.readme, encoding="utf-8") as f:
            self.assertEqual(f.read(), text)

    def test_changed_results_are_caught(self):
        res_dir = os.path.join(self.tmp, "results")
        shutil.copytree(readme_block.RESULTS, res_dir)
        with open(os.path.join(res_dir, "latest.json"), encoding="utf-8") as f:
            res = json.load(f)
        res["scenarios"]["h1-keepalive"]["summary"]["proxy"]["rps"] *= 2
        with open(os.path.join(res_dir, "latest.json"), "w", encoding="utf-8") as f:
            json.dump(res, f)
        fresh, _ = readme_block.update(self.readme, check_only=True, results=res_dir)
        self.assertFalse(fresh)

    def test_feature_cost_rows_appear_once_committed(self):
        res_dir = os.path.join(self.tmp, "results")
        shutil.copytree(readme_block.RESULTS, res_dir)
        if os.path.exists(os.path.join(res_dir, "feature-cost.json")):
            os.unlink(os.path.join(res_dir, "feature-cost.json"))
        fresh, _ = readme_block.update(self.readme, check_only=True, results=res_dir)
        self.assertEqual(fresh, not os.path.exists(os.path.join(readme_block.RESULTS, "feature-cost.json")),
                         "without feature-cost.json the block is what it was before it existed")
        with open(os.path.join(res_dir, "feature-cost.json"), "w", encoding="utf-8") as f:
            json.dump(feature_result({"baseline": (10_000, 20_000), "inspector": (9_500, 17_000),
                                      "routes-50": (9_900, 20_100)}), f)
        readme_block.update(self.readme, check_only=False, results=res_dir)
        with open(self.readme, encoding="utf-8") as f:
            text = f.read()
        block = text[text.index(readme_block.BEGIN):text.index(readme_block.END)]
        self.assertIn("| Routing: 50 routes against 1 | 0.990× (cost +1.0 %) | 1.005× (cost -0.5 %) | "
                      "routing cost ≤ 2 % | ✅ within |", block)
        self.assertIn("| Inspector capture: on against off | 0.950× (cost +5.0 %) | 0.850× (cost +15.0 %) | "
                      "capture on ≤ 10 %; off = baseline | ❌ over |", block)
        self.assertTrue(readme_block.update(self.readme, check_only=True, results=res_dir)[0])

    def test_missing_markers_are_an_error(self):
        with open(self.readme, "w", encoding="utf-8") as f:
            f.write("# no block here\n")
        with self.assertRaises(readme_block.BlockError):
            readme_block.update(self.readme, check_only=True)


def feature_runs(rps: dict[str, tuple[float, float]], rounds: int = 3) -> list[dict]:
    """feature_cost rows: every mode, scenario (h1, h2 req/s from `rps`, round 2 +1 %, round 3
    -1 %) and round, p50 1 ms."""
    return [{"round": r + 1, "mode": mode, "scenario": sc["id"], "rps": rps[mode][i] * (1, 1.01, 0.99)[r % 3],
             "p50_ms": 1.0,
             "p99_ms": 2.0, "ok": 100, "errors": 0, "requests": 100, "error_detail": {}}
            for r in range(rounds) for mode in feature_cost.MODES for i, sc in enumerate(feature_cost.SCENARIOS)]


def feature_result(rps: dict[str, tuple[float, float]]) -> dict:
    env = {"date": "2026-12-08 00:00 UTC", "commit": "abc1234", "host": "Linux, 2 CPUs", "mode": "full",
           "command": "python3 bench/feature_cost.py --rounds 3 --duration 5", "rounds": 3, "duration": 5.0,
           "threads": 1, "loadavg_start": [0.5, 0.4, 0.3], "loadavg_end": [1.5, 0.6, 0.4], "wall_s": 100.0}
    rows = feature_runs(rps)
    return {"env": env, "comparisons": feature_cost.summarise(rows), "runs": rows, "proxy_logs": []}


class FeatureCost(unittest.TestCase):
    def test_verdict_at_and_past_the_budget(self):
        self.assertTrue(feature_cost.verdict(1000, 980, 0.02)["within"])  # exactly 2 %: within
        over = feature_cost.verdict(1000, 979, 0.02)
        self.assertFalse(over["within"])
        self.assertAlmostEqual(over["cost"], 0.021)
        faster = feature_cost.verdict(1000, 1100, 0.02)
        self.assertTrue(faster["within"])
        self.assertAlmostEqual(faster["cost"], -0.1)
        self.assertIsNone(feature_cost.verdict(0, 900, 0.1)["within"])  # the baseline measured nothing
        self.assertIsNone(feature_cost.verdict(1000, float("nan"), 0.1)["ratio"])
        # Over at the median, but the rounds overlap: no finding either way.
        noisy = feature_cost.verdict(1000, 900, 0.02, overlap=True)
        self.assertIsNone(noisy["within"])
        self.assertTrue(noisy["noise"])
        self.assertEqual(feature_cost.fmt_verdict(noisy["within"], noisy["noise"]), feature_cost.NOISE_MARK)
        # Within stays within, overlap or not; clearly slower rounds stay over.
        self.assertTrue(feature_cost.verdict(1000, 990, 0.02, overlap=True)["within"])
        self.assertFalse(feature_cost.verdict(1000, 900, 0.02, overlap=False)["within"])

    def test_a_comparison_is_over_when_one_scenario_is(self):
        self.assertTrue(feature_cost.overall([True, True]))
        self.assertFalse(feature_cost.overall([True, False]))
        self.assertFalse(feature_cost.overall([None, False]))
        self.assertIsNone(feature_cost.overall([True, None]))
        self.assertIsNone(feature_cost.overall([]))

    def test_fifty_routes_and_the_loads_one(self):
        entries = feature_cost.route_entries(4000, list(range(5000, 5049)))
        self.assertEqual(len(entries), 50)
        matchers = [e.split("=", 1)[0] for e in entries]
        self.assertEqual(len(set(matchers)), 50, "each host and prefix once (the proxy refuses a repeat)")
        self.assertEqual(entries[-1], "localhost=https://127.0.0.1:4000")
        self.assertEqual(sum("127.0.0.1:4000" in e for e in entries), 1, "only the load's route reaches the app")
        self.assertTrue(any(m.startswith("*.") for m in matchers), "wildcards")
        self.assertTrue(any(m.startswith("localhost/") for m in matchers), "prefixes on the load's host")
        self.assertTrue(any(e.endswith(" strip") for e in entries))
        self.assertEqual(feature_cost.SCENARIOS[0]["host"], "localhost")

    def test_each_mode_sets_only_its_feature(self):
        spare = list(range(5000, 5049))
        base = feature_cost.mode_env("baseline", 4000, spare, 4040)
        self.assertEqual(base, {"PROXY_UPSTREAM": "127.0.0.1:4000", "PROXY_INSPECT_LISTEN": ""})
        self.assertEqual(feature_cost.mode_env("inspector", 4000, spare, 4040),
                         {**base, "PROXY_INSPECT_LISTEN": "127.0.0.1:4040"})
        routes = feature_cost.mode_env("routes-50", 4000, spare, 4040)
        self.assertNotIn("PROXY_UPSTREAM", routes)  # else a 51st route: PROXY_UPSTREAM's `*`
        self.assertEqual(routes["PROXY_ROUTES"].count(","), 49)
        self.assertEqual(routes["PROXY_INSPECT_LISTEN"], "")

    def test_rounds_rotate_every_mode_through_every_position(self):
        orders = [feature_cost.round_order(r) for r in range(3)]
        self.assertEqual(orders[0][0], "baseline")
        for pos in range(3):
            self.assertEqual({o[pos] for o in orders}, set(feature_cost.MODES))
        self.assertEqual(feature_cost.round_order(3), orders[0])

    def test_summary_and_tables(self):
        res = feature_result({"baseline": (10_000, 20_000), "inspector": (9_500, 17_000),
                              "routes-50": (9_900, 20_100)})
        routing, inspector = res["comparisons"]
        self.assertEqual((routing["id"], inspector["id"]), ("routing", "inspector"))
        self.assertAlmostEqual(routing["scenarios"][0]["ratio"], 0.99)
        self.assertTrue(routing["within"])
        self.assertEqual([s["within"] for s in inspector["scenarios"]], [True, False])  # h2: 15 % > 10 %
        self.assertFalse(inspector["within"])
        md = feature_cost.markdown(res)
        self.assertIn("| HTTP/1.1 keep-alive, 32 conns | 10,000 (9,900–10,100) | 9,900 (9,801–9,999) | 0.990× | "
                      "+1.0 % | ≤ 2 % | ✅ within |", md)
        self.assertIn("| HTTP/2, 32 conns x 16 streams | 20,000 (19,800–20,200) | 17,000 (16,830–17,170) | 0.850× | "
                      "+15.0 % | ≤ 10 % | ❌ over |", md)
        self.assertIn("0.50 / 0.40 / 0.30 at start", md)

    def test_errors_and_logged_errors_fail_the_run(self):
        run = feature_cost.Run.__new__(feature_cost.Run)
        run.rows = feature_runs({m: (100, 100) for m in feature_cost.MODES}, rounds=1)
        run.logs = []
        self.assertEqual(run.failures(), [])
        run.rows[0].update(ok=98, errors=2)
        run.logs = [{"round": 1, "mode": "routes-50", "errors": ["2026/12/08 [error] 1#0: boom"]}]
        bad = run.failures()
        self.assertEqual(len(bad), 2)
        self.assertIn("2 errors of 100 requests", bad[0])
        self.assertIn("boom", bad[1])


class TlsProbe(unittest.TestCase):
    """A real TLS server behind a Relay; real clients; the relay must read what was negotiated."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp()
        cls.cert, cls.key = os.path.join(cls.tmp, "c.pem"), os.path.join(cls.tmp, "k.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", cls.key, "-out",
                        cls.cert, "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def negotiate(self, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> list:
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)

        def serve():
            conn, _ = srv.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as s:
                s.sendall(s.recv(100))

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        with socket.socket() as probe_port:
            probe_port.bind(("127.0.0.1", 0))
            port = probe_port.getsockname()[1]
        relay = tlsprobe.Relay(port, srv.getsockname()[1])
        relay.start()
        try:
            with client_ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost") as c:
                c.sendall(b"ping")
                self.assertEqual(c.recv(100), b"ping")
            t.join(5)
        finally:
            relay.stop()
            srv.close()
        return relay.seen

    def contexts(self, version: ssl.TLSVersion, curve: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(self.cert, self.key)
        server.minimum_version = server.maximum_version = version
        server.set_ecdh_curve(curve)
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
        return server, client

    def test_tls13_x25519(self):
        seen = self.negotiate(*self.contexts(ssl.TLSVersion.TLSv1_3, "X25519"))
        self.assertEqual(len(seen), 1)
        self.assertEqual((seen[0]["version"], seen[0]["group"]), ("TLSv1.3", "X25519"))
        self.assertTrue(seen[0]["suite"].startswith("TLS_"))
        self.assertFalse(seen[0]["hrr"])

    def test_tls13_server_forcing_another_group_shows_the_retry(self):
        # the client sends an X25519 share first; a P-384-only server must ask again (HRR)
        seen = self.negotiate(*self.contexts(ssl.TLSVersion.TLSv1_3, "secp384r1"))
        self.assertEqual((seen[0]["version"], seen[0]["group"], seen[0]["hrr"]), ("TLSv1.3", "P-384", True))

    def test_tls12_group_from_server_key_exchange(self):
        seen = self.negotiate(*self.contexts(ssl.TLSVersion.TLSv1_2, "prime256v1"))
        self.assertEqual((seen[0]["version"], seen[0]["group"]), ("TLSv1.2", "P-256"))
        self.assertIn("ECDHE", seen[0]["suite"])


if __name__ == "__main__":
    unittest.main()
