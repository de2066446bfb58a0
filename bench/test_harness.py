"""Tests of the bench harness itself (no load, no contenders): the README block check, the
error-rate rule, and the TLS probe against real TLS handshakes on loopback. Run by CI:
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

    def test_missing_markers_are_an_error(self):
        with open(self.readme, "w", encoding="utf-8") as f:
            f.write("# no block here\n")
        with self.assertRaises(readme_block.BlockError):
            readme_block.update(self.readme, check_only=True)


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
