"""The package and its offline datasets work with the network unreachable, from a fresh process."""

import subprocess
import sys

BLOCK_NETWORK = """
import socket

def refuse(*args, **kwargs):
    raise OSError("network is unreachable (blocked by the test)")

socket.socket.connect = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
"""


def test_import_and_offline_datasets_without_network(tmp_path):
    script = BLOCK_NETWORK + """
import aigc_lab
from aigc_lab.data import load_dataset
print(len(load_dataset("digits")), len(load_dataset("photos", "test")), len(load_dataset("objects3d", "test", n=16)))
"""
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "AIGC_LAB_PROGRESS": "0"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1000", "5", "16"]


def test_online_dataset_without_network_fails_with_one_sentence(tmp_path):
    script = BLOCK_NETWORK + """
from aigc_lab.data import load_dataset, DatasetUnavailableError
try:
    load_dataset("mnist")
except DatasetUnavailableError as error:
    print(error)
"""
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    message = result.stdout.strip()
    assert message.startswith("Could not download 'mnist'") and "offline dataset" in message
    assert len(message.splitlines()) == 1 and "Traceback" not in result.stderr
