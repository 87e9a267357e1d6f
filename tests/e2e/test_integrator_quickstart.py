"""The integrator quickstart of docs/integrators.md, run as written: a fresh chain, a deployer
keystore, `capa chain deploy` and governance, a provider set up with `capa init
--deployment` and `capa provider register`, the example contract created with `forge create`
and driven with `forge script`, reacting to its job's settlement.

What a provider's daemon does between (accept the job, run it, settle it) is done here with
the same library calls, and the verifier committee's approval is one account's signature:
the steps an integrator runs are the commands themselves.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from eth_account import Account
from eth_utils.crypto import keccak
from typer.testing import CliRunner

from node.chain.anvil import DEV_PRIVATE_KEYS, run_anvil
from node.chain.artifacts import REPO_ROOT
from node.chain.client import ChainClient
from node.chain.manifest import read_manifest
from node.chain.market import Market
from node.chain.typed_data import KeyAttestation, Result, sign_message
from node.cli.main import app
from node.config.loader import load_config
from node.keys.account import load_account

FORGE = REPO_ROOT / "node_modules" / "@foundry-rs" / "forge-linux-amd64" / "bin" / "forge"
PASSWORD = "integrator"
TDX = 2
MRTD = "0x" + "5a" * 48
ETH = 10**18


def capa(*args: str, password: str = PASSWORD) -> dict:  # type: ignore[type-arg]
    result = CliRunner().invoke(
        app, [*args, "--json"], env={"CAPA_KEYSTORE_PASSWORD": password, "COLUMNS": "200"}
    )
    assert result.exit_code == 0, f"capa {' '.join(args)}: {result.output}"
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def forge(*args: str, build: Path) -> str:
    """forge with its build output, cache and broadcast logs kept out of the repository."""
    env = {
        **os.environ,
        "PATH": f"{FORGE.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "FOUNDRY_OUT": str(build / "out"),
        "FOUNDRY_CACHE_PATH": str(build / "cache"),
        "FOUNDRY_BROADCAST": str(build / "broadcast"),
    }
    done = subprocess.run(
        [str(FORGE), *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def fund(chain: ChainClient, to: str, wei: int) -> None:
    faucet = Account.from_key(DEV_PRIVATE_KEYS[9])
    tx = {
        "to": to,
        "value": wei,
        "gas": 21_000,
        "maxFeePerGas": 10**11,
        "maxPriorityFeePerGas": 10**9,
        "nonce": chain.w3.eth.get_transaction_count(faucet.address, "pending"),
        "chainId": chain.chain_id,
    }
    signed = faucet.sign_transaction(tx)
    chain.w3.eth.wait_for_transaction_receipt(
        chain.w3.eth.send_raw_transaction(signed.raw_transaction)
    )


def test_an_integrator_deploys_from_a_keystore_and_runs_the_example(tmp_path: Path) -> None:
    with run_anvil(chain_id=31337) as anvil:
        chain = ChainClient(anvil.rpc_url)
        rpc = ["--rpc-url", anvil.rpc_url]

        # The integrator's account: any Web3 Secret Storage keystore, funded on the chain.
        integrator = Account.create()
        keystore = tmp_path / "deployer.json"
        keystore.write_text(
            json.dumps(Account.encrypt(integrator.key, PASSWORD, kdf="scrypt", iterations=16))
        )
        password = tmp_path / "password"
        password.write_text(PASSWORD)
        fund(chain, integrator.address, 10 * ETH)
        signer = ["--keystore", str(keystore), "--password-file", str(password)]

        # 1. Deploy; the manifest names everything that follows.
        manifest_path = tmp_path / "deployments" / "31337.json"
        deployed = capa("chain", "deploy", *rpc, *signer, "--out", str(manifest_path))
        manifest = read_manifest(manifest_path)
        assert deployed["contracts"]["JobMarket"]["address"] == manifest.market
        on = ["--deployment", str(manifest_path), *rpc]

        # 2. Govern: a kind, a measurement, a committee of one verifier node.
        verifier_dir = tmp_path / "verifier"
        verifier = capa(
            "init",
            "--role",
            "verifier",
            "--dir",
            str(verifier_dir),
            "--deployment",
            str(manifest_path),
            "--api-port",
            "0",
            "--scrypt-n",
            "16",
        )
        capa("chain", "kind", "enable", "tdx", *on, *signer)
        approved = capa(
            "chain", "measurement", "approve", "tdx", MRTD, "--until", "+30d", *on, *signer
        )
        capa(
            "chain",
            "committee",
            "set",
            "--add",
            verifier["address"],
            "--threshold",
            "1",
            *on,
            *signer,
        )
        shown = capa("chain", "show", *on)
        assert shown["kinds"]["tdx"]["enabled"] and shown["committee"]["members"] == [
            verifier["address"]
        ]

        # 3. A provider joins: a node from the manifest, funded, registered with its stake.
        provider_dir = tmp_path / "provider"
        provider = capa(
            "init",
            "--role",
            "provider",
            "--backend",
            "sim",
            "--dir",
            str(provider_dir),
            "--rpc-url",
            anvil.rpc_url,
            "--deployment",
            str(manifest_path),
            "--api-port",
            "0",
            "--scrypt-n",
            "16",
        )
        provider_config = ["--config", str(provider_dir / "capa.toml")]
        fund(chain, provider["address"], 5 * ETH)
        capa("provider", "register", "--stake", "1eth", *provider_config)
        # Its enclave key, approved by the committee (the verifier daemon's part).
        market = Market.at(chain, manifest.market)
        settings = load_config(provider_dir / "capa.toml", env={})
        provider_account = load_account(settings.keys.keystore, PASSWORD)
        verifier_account = load_account(
            load_config(verifier_dir / "capa.toml", env={}).keys.keystore, PASSWORD
        )
        enclave = Account.create()
        attestation = KeyAttestation(
            provider=provider_account.address,
            enclave_key=enclave.address,
            tee_kind=TDX,
            measurement=bytes.fromhex(approved["measurement"][2:]),
            tcb_status=6,
            evidence_hash=keccak(b"evidence"),
            expires_at=market.latest_timestamp() + 7 * 86400,
        )
        market.register_key(
            provider_account,
            attestation,
            market.committee_signatures(attestation, [verifier_account]),
        )

        # 4. The example: created with forge, a job posted through it with forge script.
        build = tmp_path / "forge"
        created = json.loads(
            forge(
                "create",
                "contracts/examples/JobPoster.sol:JobPoster",
                *rpc,
                *signer,
                "--broadcast",
                "--json",
                "--constructor-args",
                manifest.market,
                build=build,
            )
        )
        poster = created["deployedTo"]
        spec, data = keccak(b"my workload spec"), keccak(b"my public input")
        forge(
            "script",
            "contracts/examples/JobPoster.s.sol:JobPosterScript",
            *rpc,
            *signer,
            "--broadcast",
            "--sig",
            "post(address,bytes32,bytes32,uint8,uint8,uint256,uint64)",
            poster,
            "0x" + spec.hex(),
            "0x" + data.hex(),
            str(1 << TDX),
            "6",
            str(ETH // 100),
            "3600",
            build=build,
        )
        job_id = bytes(market.market.functions.jobIdFor(poster, 1).call())
        assert market.job(job_id).state.name == "POSTED"

        # 5. The provider takes it, its enclave signs the result, the job settles (daemon's part).
        market.accept_job(provider_account, job_id, enclave.address, 60)
        output = keccak(b"the output")
        result = Result(job_id, provider_account.address, spec, data, output)
        settled = market.submit_result(
            provider_account,
            job_id,
            output,
            sign_message(market.market_domain, result, enclave.key),
        )

        # 6. The example reacts: a keeper reads the settling transaction's input and hands in
        # the output hash and the enclave's signature.
        settling = chain.w3.eth.get_transaction(settled["transactionHash"])
        _, arguments = market.market.decode_function_input(settling["input"])
        forge(
            "script",
            "contracts/examples/JobPoster.s.sol:JobPosterScript",
            *rpc,
            *signer,
            "--broadcast",
            "--sig",
            "acceptResult(address,bytes32,bytes32,bytes)",
            poster,
            "0x" + job_id.hex(),
            "0x" + bytes(arguments["outputHash"]).hex(),
            "0x" + bytes(arguments["enclaveSignature"]).hex(),
            build=build,
        )
        example = chain.w3.eth.contract(
            address=poster,
            abi=json.loads((build / "out" / "JobPoster.sol" / "JobPoster.json").read_text())["abi"],
        )
        assert bytes(example.functions.outputOf(job_id).call()) == output

        # 7. The provider sees its earnings and takes them.
        earnings = capa("provider", "earnings", *provider_config)
        assert earnings["jobs_settled"] == 1 and int(earnings["withdrawable"]) > 0
        taken = capa("wallet", "withdraw", "all", *provider_config)
        assert taken["withdrawn"] == earnings["withdrawable"]
