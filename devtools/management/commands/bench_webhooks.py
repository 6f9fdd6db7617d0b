"""`manage.py bench_webhooks --events N`: signed order events through the real endpoint and a real worker.

Starts, on 127.0.0.1, the app under gunicorn (`--servers` gthread workers of `--threads` threads each, as in production;
`--server django` uses Django's threaded WSGI server instead) and a Celery worker (`--worker-concurrency`) on its own
queue, both on the configured database and broker; then sends N signed order
deliveries (Shopify orders/paid and WooCommerce order.created, alternately, each a new paid order of one of a pool of
shoppers) over keep-alive connections from `--clients` threads, and waits until the worker processed them all.

Before the deliveries, the same clients send as many POSTs of the same bodies to a trivial Django view served by the
same server processes (devtools.bench_urls: the app's middleware and settings, a view that reads the body and answers
"ok", no signature, no database): its rate is the floor, what Django itself answers here.

Prints the figures as one JSON object on its last line: received_per_s (deliveries answered 200 per second of sending),
received_floor_per_s (the trivial view's rate) and received_vs_floor (goal: at least 0.6), processed_per_s (deliveries
processed per second, from the first received to the last processed; goal: at least 200) and processed_vs_goal,
latencies, and whether every credited point is on the ledger.
"""

import base64
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from socketserver import ThreadingMixIn

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Max, Min, Sum
from django.utils import timezone

from loyalty.management.arguments import positive_int
from loyalty.models import EarnRule, EarnRuleKind, LedgerEntry, ProgramSettings
from loyalty.selectors import ledger_differences
from webhooks.models import EventStatus, WebhookEvent

ROOT = Path(settings.BASE_DIR)


class Command(BaseCommand):
    help = "Benchmark the webhook endpoints and their processing: prints JSON with received_per_s and processed_per_s."

    def add_arguments(self, parser):
        parser.add_argument("--events", type=positive_int, default=2000)
        parser.add_argument(
            "--clients", type=positive_int, default=16, help="Sending threads (keep-alive connections)."
        )
        parser.add_argument("--server", choices=["gunicorn", "django"], default="gunicorn", help="WSGI server to run.")
        parser.add_argument("--servers", type=positive_int, default=2, help="WSGI server processes sharing the port.")
        parser.add_argument("--threads", type=positive_int, default=8, help="Threads per gunicorn worker.")
        parser.add_argument("--worker-concurrency", type=positive_int, default=2)
        parser.add_argument(
            "--shoppers", type=positive_int, default=500, help="Distinct shoppers the orders come from."
        )
        parser.add_argument("--timeout", type=float, default=600)
        parser.add_argument("--serve", type=int, help=argparse_hidden())

    def handle(self, *args, **options):
        if options["serve"]:
            return serve(options["serve"])
        self._check_migrated()
        options["load_at_start"] = os.getloadavg()  # the machine's load before the bench adds its own
        rule = self._prepare()
        run = uuid.uuid4().hex[:8]
        after = WebhookEvent.objects.aggregate(last=Max("pk"))["last"] or 0
        secret_shopify = settings.SHOPIFY_WEBHOOK_SECRET or secrets.token_hex(16)
        secret_woo = settings.WOOCOMMERCE_WEBHOOK_SECRET or secrets.token_hex(16)
        deliveries = build_deliveries(options["events"], run, options["shoppers"], secret_shopify, secret_woo)
        expected_points = sum(d.points for d in deliveries) if rule.points_per_currency_unit == 1 else None
        env = dict(os.environ)
        env.update(
            SHOPIFY_WEBHOOK_SECRET=secret_shopify,
            WOOCOMMERCE_WEBHOOK_SECRET=secret_woo,
            CELERY_TASK_DEFAULT_QUEUE=f"bench-{run}",
            CELERY_TASK_ALWAYS_EAGER="false",
            PYTHONUNBUFFERED="1",
            LOG_LEVEL="WARNING",
        )
        port = free_port()
        log_dir = Path(settings.VAR_DIR) / "bench_webhooks"
        log_dir.mkdir(parents=True, exist_ok=True)
        procs = []
        try:
            procs.append(start_worker(env, options["worker_concurrency"], log_dir / f"worker-{run}.log"))
            if options["server"] == "gunicorn":
                procs.append(start_gunicorn(env, port, options, log_dir / f"server-{run}.log"))
            else:
                for index in range(options["servers"]):
                    procs.append(start_server(env, port, log_dir / f"server-{run}-{index}.log"))
            wait_port(port, procs)
            floor = measure_floor(port, deliveries, options["clients"])
            self.stderr.write(f"trivial view: {floor['ok']} answered in {floor['elapsed']:.2f}s")
            self.stderr.write(f"sending {len(deliveries)} signed deliveries to 127.0.0.1:{port} ...")
            sent = send_all(port, deliveries, options["clients"])
            self.stderr.write(f"sent in {sent['elapsed']:.2f}s; waiting for the worker ...")
            done = wait_processed(after, len(deliveries), options["timeout"])
        finally:
            for proc in procs:
                stop(proc)
            drop_queue(env["CELERY_TASK_DEFAULT_QUEUE"])
        figures = self._figures(after, deliveries, sent, done, rule, expected_points, options)
        figures.update(floor_figures(floor, figures["received_per_s"], figures["processed_per_s"]))
        self.stdout.write(json.dumps(figures))

    def _check_migrated(self):
        executor = MigrationExecutor(connection)
        if executor.migration_plan(executor.loader.graph.leaf_nodes()):
            raise CommandError("The database has unapplied migrations: run `manage.py migrate` first.")

    def _prepare(self) -> EarnRule:
        program = ProgramSettings.load()
        if program.program_started_at > timezone.now() - timedelta(days=1):
            ProgramSettings.objects.filter(pk=1).update(program_started_at=timezone.now() - timedelta(days=365))
        rule = EarnRule.objects.filter(kind=EarnRuleKind.ORDER, active=True).order_by("pk").first()
        if rule is None:
            rule = EarnRule.objects.create(
                name="Place an order", kind=EarnRuleKind.ORDER, points_per_currency_unit=Decimal(1), hold_days=14
            )
        return rule

    def _figures(self, after, deliveries, sent, done, rule, expected_points, options) -> dict:
        events = WebhookEvent.objects.filter(pk__gt=after)
        span = events.aggregate(first=Min("received_at"), last=Max("processed_at"))
        processed = events.filter(status=EventStatus.PROCESSED).count()
        elapsed = (span["last"] - span["first"]).total_seconds() if span["last"] and span["first"] else None
        order_ids = [d.order_ref for d in deliveries]
        credited = LedgerEntry.objects.filter(
            source="order", source_ref__in=list_order_pks(order_ids), kind="earn"
        ).aggregate(total=Sum("points"))["total"]
        latencies = sorted(sent["latencies"])
        return {
            "events": len(deliveries),
            "database": connection.vendor,
            "broker": settings.CELERY_BROKER_URL.split("://")[0],
            "server": options["server"],
            "servers": options["servers"],
            "threads": options["threads"] if options["server"] == "gunicorn" else None,
            "clients": options["clients"],
            "worker_concurrency": options["worker_concurrency"],
            "answered_200": sent["ok"],
            "errors": sent["errors"],
            "send_seconds": round(sent["elapsed"], 3),
            "sender_cpu_s": round(sent["cpu"], 3),
            "received_per_s": round(sent["ok"] / sent["elapsed"], 1) if sent["elapsed"] else None,
            "latency_ms_p50": round(statistics.median(latencies) * 1000, 2) if latencies else None,
            "latency_ms_p99": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2) if latencies else None,
            "processed": processed,
            "processed_seconds": round(elapsed, 3) if elapsed else None,
            "processed_per_s": round(processed / elapsed, 1) if elapsed else None,
            "all_processed": done,
            "points_credited": credited,
            "points_expected": expected_points,
            "ledger_reconciles": not ledger_differences(limit=10),
            "cpus": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),  # other work on the machine skews the figures
            "load_average_at_start": [round(x, 2) for x in options["load_at_start"]],
        }


PROCESSED_GOAL_PER_S = 200
RECEIVED_GOAL_VS_FLOOR = 0.6


def measure_floor(port: int, deliveries: list["Delivery"], clients: int) -> dict:
    """The trivial view's rate: the same bodies from the same clients to the same server, after a short warm-up."""
    from devtools.bench_urls import TRIVIAL_PATH

    trivial = [Delivery(TRIVIAL_PATH, d.body, d.headers, 0, "") for d in deliveries]
    send_all(port, trivial[: min(len(trivial), 50 * clients)], clients)  # every server thread and connection warm
    return send_all(port, trivial, clients)


def floor_figures(floor: dict, received_per_s, processed_per_s) -> dict:
    floor_per_s = round(floor["ok"] / floor["elapsed"], 1) if floor["elapsed"] and floor["ok"] else None
    return {
        "received_floor_per_s": floor_per_s,
        "received_floor_errors": floor["errors"],
        "received_vs_floor": round(received_per_s / floor_per_s, 3) if received_per_s and floor_per_s else None,
        "goal_received_vs_floor": RECEIVED_GOAL_VS_FLOOR,
        "goal_processed_per_s": PROCESSED_GOAL_PER_S,
        "processed_vs_goal": round(processed_per_s / PROCESSED_GOAL_PER_S, 3) if processed_per_s else None,
    }


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


def list_order_pks(order_refs):
    from loyalty.models import Order

    return list(Order.objects.filter(store_order_id__in=order_refs).values_list("pk", flat=True))


# ---------------------------------------------------------------------------------------------------------------
# The deliveries


class Delivery:
    __slots__ = ("path", "body", "headers", "points", "order_ref")

    def __init__(self, path, body, headers, points, order_ref):
        self.path, self.body, self.headers, self.points, self.order_ref = path, body, headers, points, order_ref

    def http_request(self, port: int) -> bytes:
        """The whole HTTP/1.1 request as the store would send it."""
        lines = [f"POST {self.path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(self.body)}"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


def _sign(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def build_deliveries(count, run, shoppers, secret_shopify, secret_woo) -> list[Delivery]:
    """Signed bodies made before the clock starts: Shopify and WooCommerce orders, alternately."""
    now = timezone.now()
    base = int(time.time()) * 1_000_000  # order ids no earlier run used
    deliveries = []
    for i in range(count):
        shopper = i % shoppers
        subtotal = Decimal(20 + (i * 37) % 480)
        if i % 2 == 0:
            deliveries.append(_shopify(i, base, run, shopper, subtotal, now, secret_shopify))
        else:
            deliveries.append(_woo(i, base, run, shopper, subtotal, now, secret_woo))
    return deliveries


def _shopify(i, base, run, shopper, subtotal, now, secret) -> Delivery:
    order_id = 6_000_000_000_000_000_000 + base + i  # above 2^53, as Shopify's are
    tax = (subtotal * Decimal("0.08")).quantize(Decimal("0.01"))
    placed = now.isoformat()
    payload = {
        "id": order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "name": f"#B{i}",
        "order_number": 100000 + i,
        "email": f"bench.shopper{shopper}@shopper.example",
        "created_at": placed,
        "processed_at": placed,
        "updated_at": placed,
        "currency": "USD",
        "financial_status": "paid",
        "cancelled_at": None,
        "subtotal_price": str(subtotal),
        "total_discounts": "0.00",
        "total_tax": str(tax),
        "taxes_included": False,
        "total_price": str(subtotal + tax + Decimal("5.00")),
        "total_shipping_price_set": {"shop_money": {"amount": "5.00", "currency_code": "USD"}},
        "tags": "bench, load test",
        "test": False,
        "customer": {"id": 7_000_000_000_000 + shopper, "email": f"bench.shopper{shopper}@shopper.example"},
        "line_items": [{"id": order_id + 1, "title": "Bench item", "price": str(subtotal), "quantity": 1}],
        "refunds": [],
    }
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "orders/paid",
        "X-Shopify-Hmac-Sha256": _sign(body, secret),
        "X-Shopify-Shop-Domain": "bench.myshopify.com",
        "X-Shopify-Webhook-Id": f"bench-{run}-{i}",
    }
    return Delivery("/webhooks/shopify/", body, headers, int(subtotal), str(order_id))


def _woo(i, base, run, shopper, subtotal, now, secret) -> Delivery:
    order_id = base + i
    tax = (subtotal * Decimal("0.20")).quantize(Decimal("0.01"))
    stamp = now.replace(tzinfo=None).isoformat(timespec="seconds")
    payload = {
        "id": order_id,
        "number": str(order_id),
        "status": "processing",
        "currency": "EUR",
        "date_created_gmt": stamp,
        "date_modified_gmt": stamp,
        "date_paid_gmt": stamp,
        "discount_total": "0.00",
        "shipping_total": "4.90",
        "total_tax": str(tax),
        "total": str(subtotal + tax + Decimal("4.90")),
        "customer_id": 0,
        "billing": {
            "first_name": "Bench",
            "last_name": f"Shopper {shopper}",
            "email": f"bench.woo{shopper}@shopper.example",
        },
        "line_items": [{"id": i, "name": "Bench item", "quantity": 1, "total": str(subtotal)}],
        "refunds": [],
    }
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-WC-Webhook-Topic": "order.created",
        "X-WC-Webhook-Signature": _sign(body, secret),
        "X-WC-Webhook-Delivery-ID": uuid.uuid4().hex,
    }
    return Delivery("/webhooks/woocommerce/", body, headers, int(subtotal), str(order_id))


# ---------------------------------------------------------------------------------------------------------------
# Sending


def send_all(port: int, deliveries: list[Delivery], clients: int) -> dict:
    """Send every delivery over `clients` keep-alive connections and count the answers.

    The requests are written out as bytes before the clock starts and the answers are read with a few lines of
    socket code: the store is another machine in production, so the sender should take as little as it can of the
    two cores the server and the worker are measured on. The CPU the sender used is in the figures (sender_cpu_s).
    """
    requests = [delivery.http_request(port) for delivery in deliveries]
    lock = threading.Lock()
    position = iter(range(len(requests)))
    result = {"ok": 0, "errors": {}, "latencies": []}

    def client():
        conn = RawConnection(port)
        latencies, ok, errors = [], 0, {}
        while True:
            with lock:
                index = next(position, None)
            if index is None:
                break
            started = time.perf_counter()
            try:
                status = conn.post(requests[index])
            except OSError as exc:
                conn.close()
                conn = RawConnection(port)
                status = type(exc).__name__
            latencies.append(time.perf_counter() - started)
            if status == 200:
                ok += 1
            else:
                errors[str(status)] = errors.get(str(status), 0) + 1
        conn.close()
        with lock:
            result["ok"] += ok
            result["latencies"].extend(latencies)
            for key, value in errors.items():
                result["errors"][key] = result["errors"].get(key, 0) + value

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started, cpu_started = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result["elapsed"] = time.perf_counter() - started
    result["cpu"] = time.process_time() - cpu_started
    return result


class RawConnection:
    """One keep-alive HTTP/1.1 connection that sends prepared requests and reads each answer's status and body."""

    def __init__(self, port: int):
        self.port = port
        self.sock = None
        self.buffer = b""

    def post(self, request: bytes) -> int:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.buffer = b""
        self.sock.sendall(request)
        head = self._read_head()
        status = int(head.split(b" ", 2)[1])
        length, closes = 0, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                closes = True
        self._read_exactly(length)
        if closes:
            self.close()
        return status

    def _read_head(self) -> bytes:
        while b"\r\n\r\n" not in self.buffer:
            self._receive()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        return head

    def _read_exactly(self, length: int) -> bytes:
        while len(self.buffer) < length:
            self._receive()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return body

    def _receive(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("the server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def wait_processed(after: int, count: int, timeout: float) -> bool:
    events = WebhookEvent.objects.filter(pk__gt=after)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if events.filter(status__in=[EventStatus.PROCESSED, EventStatus.FAILED]).count() >= count:
            return True
        time.sleep(0.25)
    return False


# ---------------------------------------------------------------------------------------------------------------
# The processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_worker(env, concurrency, log_path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel=WARNING", "-P", "prefork"]
    cmd += [f"--concurrency={concurrency}", "-Q", env["CELERY_TASK_DEFAULT_QUEUE"], "--without-gossip"]
    cmd += ["--without-mingle", "--without-heartbeat", "-n", f"bench-{uuid.uuid4().hex[:6]}@%h"]
    log = open(log_path, "w")  # noqa: SIM115 - the process writes to it until it stops
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def start_gunicorn(env, port, options, log_path) -> subprocess.Popen:
    """The production server: gthread workers keep the clients' connections alive between deliveries."""
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        "devtools.bench_wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--worker-class",
        "gthread",
    ]
    cmd += ["--workers", str(options["servers"]), "--threads", str(options["threads"]), "--keep-alive", "30"]
    cmd += ["--log-level", "warning"]
    log = open(log_path, "w")  # noqa: SIM115 - the process writes to it until it stops
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def start_server(env, port, log_path) -> subprocess.Popen:
    cmd = [sys.executable, "manage.py", "bench_webhooks", "--serve", str(port)]
    log = open(log_path, "w")  # noqa: SIM115 - the process writes to it until it stops
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_port(port, procs, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise CommandError(f"a bench process exited early: {proc.args}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                time.sleep(1)  # let every server process bind, and the worker get ready
                return
        except OSError:
            time.sleep(0.2)
    raise CommandError(f"the bench server did not listen on {port} within {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def drop_queue(queue: str) -> None:
    """The run's own queue goes with it (a drain stopped mid-way is requeued there and never taken again)."""
    url = settings.CELERY_BROKER_URL
    if url.startswith(("redis://", "rediss://")):
        import redis

        redis.Redis.from_url(url).delete(queue)


def serve(port: int) -> None:
    """A threaded WSGI server on 127.0.0.1:port; several processes share the port (SO_REUSEPORT) to use the cores."""
    from django.core.servers.basehttp import WSGIRequestHandler, WSGIServer
    from django.core.wsgi import get_wsgi_application

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format, *args):  # noqa: A002 - the base class's signature
            pass

    class SharedPortServer(ThreadingMixIn, WSGIServer):
        daemon_threads = True

        def server_bind(self):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            super().server_bind()

    from django.conf import settings as live_settings

    live_settings.ROOT_URLCONF = "devtools.bench_urls"  # the app's URLs and the floor's trivial view
    httpd = SharedPortServer(("127.0.0.1", port), QuietHandler, ipv6=False)
    httpd.set_app(get_wsgi_application())
    httpd.serve_forever()
