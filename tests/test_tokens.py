"""Guest tokens: each way a token can be wrong is told apart, without storage."""

from __future__ import annotations

import pytest

from loadkit.gateway.tokens import CHAT_SCOPE, Claims, TokenError, TokenSigner

NOW = 1_800_000_000.0


@pytest.fixture
def signer() -> TokenSigner:
    return TokenSigner("test-secret")


def test_a_fresh_token_verifies_and_carries_its_claims(signer: TokenSigner) -> None:
    token = signer.issue("guest-1", NOW + 60, [CHAT_SCOPE])
    verdict = signer.verify(token, "guest-1", NOW)
    assert verdict.ok and verdict.error is None
    assert verdict.claims == Claims("guest-1", NOW + 60, (CHAT_SCOPE,))


def test_token_is_opaque_and_does_not_contain_the_secret(signer: TokenSigner) -> None:
    token = signer.issue("guest-1", NOW + 60, [CHAT_SCOPE])
    assert "test-secret" not in token and "guest-1" not in token


def test_a_token_signed_with_another_secret_is_forged(signer: TokenSigner) -> None:
    other = TokenSigner("another-secret").issue("guest-1", NOW + 60, [CHAT_SCOPE])
    assert signer.verify(other, "guest-1", NOW).error is TokenError.FORGED


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "!!!.???", "e30.AAAA", "my-valid-oauth-token"])
def test_garbage_is_forged_not_an_exception(signer: TokenSigner, garbage: str) -> None:
    verdict = signer.verify(garbage, "guest-1", NOW)
    assert verdict.error is TokenError.FORGED and verdict.claims is None


def test_a_tampered_payload_is_forged(signer: TokenSigner) -> None:
    token = signer.issue("guest-1", NOW + 60, [])
    widened = signer.issue("guest-1", NOW + 60, [CHAT_SCOPE])
    spliced = widened.split(".")[0] + "." + token.split(".")[1]
    assert signer.verify(spliced, "guest-1", NOW).error is TokenError.FORGED


def test_an_expired_token_is_refused_from_its_expiry_on(signer: TokenSigner) -> None:
    token = signer.issue("guest-1", NOW + 0.25, [CHAT_SCOPE])
    assert signer.verify(token, "guest-1", NOW + 0.249).ok
    assert signer.verify(token, "guest-1", NOW + 0.25).error is TokenError.EXPIRED


def test_a_token_presented_with_another_guest_id_is_a_mismatch(signer: TokenSigner) -> None:
    token = signer.issue("guest-1", NOW + 60, [CHAT_SCOPE])
    assert signer.verify(token, "guest-2", NOW).error is TokenError.GUEST_MISMATCH


def test_a_token_without_the_chat_scope_is_missing_scope(signer: TokenSigner) -> None:
    token = signer.issue("guest-1", NOW + 60, ["guest:api:read"])
    verdict = signer.verify(token, "guest-1", NOW)
    assert verdict.error is TokenError.MISSING_SCOPE
    assert verdict.claims is not None and verdict.claims.scopes == ("guest:api:read",)


def test_checks_run_in_the_order_a_client_can_fix_them(signer: TokenSigner) -> None:
    token = signer.issue("guest-1", NOW - 10, [])
    assert signer.verify(token, "guest-2", NOW).error is TokenError.GUEST_MISMATCH
    assert signer.verify(token, "guest-1", NOW).error is TokenError.EXPIRED


def test_without_a_secret_each_signer_draws_its_own() -> None:
    token = TokenSigner().issue("guest-1", NOW + 60, [CHAT_SCOPE])
    assert TokenSigner().verify(token, "guest-1", NOW).error is TokenError.FORGED
    assert TokenSigner(b"k").verify(TokenSigner("k").issue("g", NOW + 1, [CHAT_SCOPE]), "g", NOW).ok
