"""Identity-like text (names, emails, phones, addresses...) generated with Faker.

These columns are never learned from, nor copied out of, the real data: each is produced
fresh from its sdtype. What is kept of the real column is its shape only (the phone
layout, the email domain, the null rate). Emails are built from the row's generated first
and last names when the table has them, as the real data usually does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from faker import Faker

_FAKER_METHOD = {
    "first_name": "first_name", "last_name": "last_name", "name": "name",
    "street_address": "street_address", "secondary_address": "secondary_address",
    "address": "address", "city": "city", "state": "state_abbr", "postcode": "postcode",
    "zipcode": "postcode", "country": "country", "company": "company", "job": "job",
    "street_name": "street_name", "license_plate": "license_plate", "ipv4_address": "ipv4",
    "url": "url", "text": "sentence", "user_name": "user_name", "ssn": "ssn", "iban": "iban",
}


@dataclass
class IdentitySpec:
    column: str
    sdtype: str
    null_rate: float = 0.0
    template: str = ""  # phone layout ('(###) ###-####') or email domain

    @classmethod
    def fit(cls, column: str, sdtype: str, values: pd.Series) -> "IdentitySpec":
        present = values.dropna().astype(str)
        template = ""
        if len(present) and sdtype == "phone_number":
            template = present.str.replace(r"[0-9]", "#", regex=True).mode().iat[0]
        elif len(present) and sdtype == "email":
            template = present.str.split("@").str[-1].mode().iat[0]
        return cls(column, sdtype, float(values.isna().mean()), template)

    def generate(self, n: int, seed: int, rows: pd.DataFrame | None = None) -> pd.Series:
        fake = Faker("en_US")
        fake.seed_instance(seed)
        rng = np.random.default_rng(seed)
        if self.sdtype == "email":
            values = _emails(fake, n, rows, self.template or "example.org")
        elif self.sdtype == "phone_number":
            values = _phones(rng, n, self.template or "(###) ###-####")
        else:
            method = getattr(fake, _FAKER_METHOD.get(self.sdtype, "word"))
            values = [method() for _ in range(n)]
        series = pd.Series(values, dtype=object)
        if self.null_rate > 0:
            series = series.where(rng.random(n) >= self.null_rate)
        return series


def _emails(fake: Faker, n: int, rows: pd.DataFrame | None, domain: str) -> list[str]:
    if rows is not None and {"first_name", "last_name"} <= set(rows.columns):
        stems = (rows["first_name"].astype(str) + "." + rows["last_name"].astype(str)).str.lower()
        stems = stems.str.replace(r"[^a-z.]", "", regex=True).tolist()
    else:
        stems = [fake.user_name() for _ in range(n)]
    seen: dict[str, int] = {}
    out = []
    for stem in stems:  # a running number keeps addresses unique, as mail systems do
        k = seen.get(stem, 0)
        seen[stem] = k + 1
        out.append(f"{stem}{k if k else ''}@{domain}")
    return out


def _phones(rng: np.random.Generator, n: int, template: str) -> list[str]:
    digits = rng.integers(0, 10, size=(n, template.count("#"))).astype(str)
    parts = template.split("#")
    out = np.full(n, parts[0], dtype=object)
    for i, sep in enumerate(parts[1:]):
        out = out + digits[:, i] + sep
    return out.tolist()
