"""DNA in: the tokenizer, the FASTA reader's policies, labels, and shards whose windows never cross a record."""

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from scorediff.data.dna import (
    labelled_runs,
    parse_sources,
    random_reverse_complement,
    reverse_complement,
    write_dna_shards,
)
from scorediff.data.sources import DataError
from scorediff.data.tokenizers import DnaTokenizer, load_tokenizer
from scorediff.data.windows import TokenWindows

FIXTURES = Path(__file__).parents[1] / "fixtures" / "dna"
ECOLI, SAUREUS = FIXTURES / "ecoli_mg1655_4kb.fa", FIXTURES / "saureus_n315_4kb.fa"


@given(st.text(alphabet="ACGT", max_size=200))
def test_tokenizer_round_trips_bases(text):
    tokenizer = DnaTokenizer()
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.encode(text.lower()) == tokenizer.encode(text)  # soft-masked repeats are bases too


def test_tokenizer_refuses_what_is_not_a_base(tmp_path):
    tokenizer = DnaTokenizer()
    with pytest.raises(ValueError, match="'N' is not a base"):
        tokenizer.encode("ACNGT")
    with pytest.raises(ValueError, match="base ids"):
        tokenizer.decode([0, 4])
    tokenizer.save(tmp_path)
    assert isinstance(load_tokenizer(tmp_path), DnaTokenizer)


def write_fasta(path: Path, records: dict[str, str]) -> Path:
    path.write_text("".join(f">{name}\n" + "\n".join(seq[i : i + 60] for i in range(0, len(seq), 60)) + "\n"
                            for name, seq in records.items()))  # fmt: skip
    return path


def test_policies_for_n_and_iupac_codes(tmp_path):
    fasta = write_fasta(tmp_path / "x.fa", {"r1": "ACGTNNacgtRYAC", "r2": "GGGG"})
    runs = lambda policy: [run for _, run in labelled_runs(str(fasta), policy)]  # noqa: E731
    assert runs("split") == ["ACGT", "acgt", "AC", "GGGG"]  # N and R, Y end a run; lower case kept as bases
    assert runs("skip") == ["ACGTacgtAC", "GGGG"]
    with pytest.raises(DataError, match="'N' at base 5 is not A, C, G or T"):
        runs("strict")


def test_labels_per_file_and_from_headers(tmp_path):
    a = write_fasta(tmp_path / "a.fa", {"chr1 species=ecoli": "ACGT" * 10})
    b = gzip.open(tmp_path / "b.fa.gz", "wt")
    b.write(">chr1 species=saureus\n" + "TTTT" * 10 + "\n")
    b.close()
    source = f"ecoli={a},saureus={tmp_path / 'b.fa.gz'}"
    assert parse_sources(source)[1] == ("saureus", str(tmp_path / "b.fa.gz"))
    assert [label for label, _ in labelled_runs(source)] == ["ecoli", "saureus"]
    from_headers = f"{a},{tmp_path / 'b.fa.gz'}"
    assert [label for label, _ in labelled_runs(from_headers, label_regex=r"species=(\w+)")] == ["ecoli", "saureus"]
    with pytest.raises(DataError, match="label every file or none"):
        parse_sources(f"ecoli={a},{a}")
    with pytest.raises(DataError, match="does not match the header"):
        list(labelled_runs(str(a), label_regex=r"strain=(\w+)"))


def test_no_window_spans_two_records_or_an_n(tmp_path):
    # two records of distinct letters; an N run inside the first: every window is one letter only
    fasta = write_fasta(tmp_path / "x.fa", {"r1": "A" * 300 + "N" * 5 + "C" * 300, "r2": "G" * 300})
    shards = write_dna_shards(str(fasta), tmp_path / "shards", val_fraction=0.2, chunk_tokens=100)
    for split in ("train", "val"):
        windows = TokenWindows(shards, split, seq_len=50)
        drawn = windows.random_batch(2000, torch.Generator().manual_seed(0))
        assert bool((drawn == drawn[:, :1]).all())  # no window mixes two stretches
        every = windows.all_windows()
        assert bool((every == every[:, :1]).all()) and len(every) == len(windows)
    counts = np.bincount(np.concatenate([np.fromfile(shards / f"{s}.bin", np.uint8) for s in ("train", "val")]))
    assert counts.tolist() == [300, 300, 300]  # every base kept once, the N dropped


def test_labelled_shards_carry_labels_to_every_window():
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        source = f"ecoli={ECOLI},saureus={SAUREUS}"
        shards = write_dna_shards(source, Path(tmp) / "s", val_fraction=0.1, chunk_tokens=1000)
        train = TokenWindows(shards, "train", seq_len=64)
        assert train.labels == ["ecoli", "saureus"]
        examples = train.all_examples()
        ecoli = "".join(line.strip() for line in ECOLI.read_text().splitlines()[1:])
        tokenizer = DnaTokenizer()
        for row, label in zip(examples["x_0"][:40], examples["label"][:40], strict=True):
            assert (tokenizer.decode(row.tolist()) in ecoli) == (int(label) == 0)
        drawn = train.random_examples(500, torch.Generator().manual_seed(1))
        assert set(drawn["label"].tolist()) == {0, 1}


def test_bad_fasta_is_one_clear_error(tmp_path):
    empty = tmp_path / "empty.fa"
    empty.write_text("")
    with pytest.raises(DataError, match="holds no FASTA record"):
        write_dna_shards(str(empty), tmp_path / "s1")
    only_n = write_fasta(tmp_path / "n.fa", {"r": "N" * 500})
    with pytest.raises(DataError, match="holds no bases"):
        write_dna_shards(str(only_n), tmp_path / "s2")
    headless = tmp_path / "headless.fa"
    headless.write_text("ACGT\n")
    with pytest.raises(DataError, match="expected a FASTA header"):
        write_dna_shards(str(headless), tmp_path / "s3")
    assert not any(p.name.startswith("s") for p in tmp_path.iterdir() if p.is_dir())  # nothing half-written


def test_reverse_complement():
    x = torch.tensor([[0, 1, 2, 3, 3]])  # ACGTT
    assert DnaTokenizer().decode(reverse_complement(x)[0].tolist()) == "AACGT"
    assert torch.equal(reverse_complement(reverse_complement(x)), x)
    rows = torch.randint(0, 4, (4000, 8), generator=torch.Generator().manual_seed(0))
    flipped = random_reverse_complement(rows, torch.Generator().manual_seed(1))
    changed = (flipped != rows).any(-1).float().mean().item()
    assert abs(changed - 0.5) < 0.03  # each row with probability 1/2 (4,000 rows: 3 standard errors ~0.024)
