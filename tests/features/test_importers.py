"""`community-ml data import`: generic files with --map/--set, re-imports, and files that cannot be read."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from features.common.errors import DataError
from features.common.home import StateHome
from features.dataset.online_retail import import_online_retail
from features.dataset.store import Dataset
from tests.conftest import write_text

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def import_json(*args: str) -> dict:
    code, out, err = run("data", "import", "--json", *args)
    assert code == 0, err
    return json.loads(out)


TRANSACTIONS = "customer,date,amount\nc1,2024-01-03,12.50\nc2,2024-01-04 09:15:00,8\nc1,2024-02-01,-3\n"


def test_a_plain_transactions_csv_imports_with_map_alone(home: StateHome, tmp_path: Path) -> None:
    # given: who, when, how much - and a refund as a negative amount
    path = write_text(tmp_path / "tx.csv", TRANSACTIONS.replace("c1,2024-02-01,-3\n", "c3,2024-02-01,3\n"))
    # when
    summary = import_json(
        "-d", "shop", "-t", "orders", "-i", str(path), "--map", "member_id=customer", "--map", "ts=date"
    )
    # then
    assert summary["tables"][0]["rows_added"] == 3
    orders = Dataset(home, "shop").read("orders")
    assert list(orders["member_id"]) == ["c1", "c2", "c3"]
    assert list(orders["amount"]) == [12.5, 8.0, 3.0]
    assert orders["ts"].iloc[1] == pd.Timestamp("2024-01-04 09:15:00")


def test_negative_amounts_without_a_return_flag_are_quarantined_not_lost(home: StateHome, tmp_path: Path) -> None:
    path = write_text(tmp_path / "tx.csv", TRANSACTIONS)
    summary = import_json(
        "-d", "shop", "-t", "orders", "-i", str(path), "--map", "member_id=customer", "--map", "ts=date"
    )
    table = summary["tables"][0]
    assert (table["rows_read"], table["rows_added"], table["rows_quarantined"]) == (3, 2, 1)
    assert table["reasons"] == {"amount: negative where not a return": 1}
    quarantine = Dataset(home, "shop").read_quarantine("orders")
    assert quarantine["row"].tolist() == [3]
    assert json.loads(quarantine["raw"].iloc[0]) == {"customer": "c1", "date": "2024-02-01", "amount": "-3"}


def test_feedback_and_surveys_import_with_their_scales_checked(home: StateHome, tmp_path: Path) -> None:
    feedback = write_text(
        tmp_path / "feedback.csv",
        "member_id,ts,kind,rating,responded_at\nc1,2024-01-03,review,5,\nc2,2024-01-04,complaint,,2024-01-04 10:00\n"
        "c3,2024-01-05,review,7,\nc4,2024-01-05,praise,,\n",
    )
    table = import_json("-d", "shop", "-t", "feedback", "-i", str(feedback))["tables"][0]
    assert (table["rows_added"], table["rows_quarantined"]) == (2, 2)
    assert table["reasons"] == {
        "rating: above the scale's maximum 5": 1,
        "kind: unknown value (allowed: review, complaint, dispute)": 1,
    }
    surveys = write_text(tmp_path / "nps.csv", "member_id,ts,score\nc1,2024-01-03,9\nc2,2024-01-03,11\n")
    table = import_json("-d", "shop", "-t", "surveys", "-i", str(surveys))["tables"][0]
    assert (table["rows_added"], table["reasons"]) == (1, {"score: above the scale's maximum 10": 1})


def test_an_interactions_tsv_with_epoch_seconds_imports_with_map_and_set(home: StateHome, tmp_path: Path) -> None:
    path = write_text(tmp_path / "events.tsv", "user\titem\ttimestamp\nu1\ti9\t1700000000\nu2\ti9\t1700003600\n")
    summary = import_json(
        "-d",
        "feed",
        "-t",
        "engagements",
        "-i",
        str(path),
        "--map",
        "member_id=user",
        "--map",
        "content_id=item",
        "--map",
        "ts=timestamp",
        "--set",
        "action=view",
    )
    assert summary["tables"][0]["rows_added"] == 2
    events = Dataset(home, "feed").read("engagements")
    assert list(events["action"]) == ["view", "view"]
    assert list(events["content_id"]) == ["i9", "i9"]
    assert events["ts"].iloc[0] == pd.Timestamp("2023-11-14 22:13:20")


def test_reimporting_the_same_file_changes_nothing_and_new_rows_append(home: StateHome, tmp_path: Path) -> None:
    path = write_text(tmp_path / "tx.csv", TRANSACTIONS)
    args = ("-d", "shop", "-t", "orders", "-i", str(path), "--map", "member_id=customer", "--map", "ts=date")
    import_json(*args)
    dataset = Dataset(home, "shop")
    before = dataset.read("orders")
    quarantined_before = len(dataset.read_quarantine("orders"))

    again = import_json(*args)["tables"][0]
    assert (again["rows_added"], again["rows_unchanged"], again["rows_total"]) == (0, 2, 2)
    pd.testing.assert_frame_equal(dataset.read("orders"), before)
    assert len(dataset.read_quarantine("orders")) == quarantined_before

    more = write_text(tmp_path / "more.csv", "customer,date,amount\nc1,2024-01-03,12.50\nc9,2024-03-01,1\n")
    added = import_json(
        "-d", "shop", "-t", "orders", "-i", str(more), "--map", "member_id=customer", "--map", "ts=date"
    )["tables"][0]
    assert (added["rows_added"], added["rows_unchanged"], added["rows_total"]) == (1, 1, 3)


def test_a_reimported_entity_is_updated_by_key(home: StateHome, tmp_path: Path) -> None:
    first = write_text(tmp_path / "m1.csv", "member_id,city\nm1,Wuhan\nm2,Suzhou\n")
    second = write_text(tmp_path / "m2.csv", "member_id,city\nm1,Hangzhou\nm2,Suzhou\n")
    import_json("-d", "shop", "-t", "members", "-i", str(first))
    table = import_json("-d", "shop", "-t", "members", "-i", str(second))["tables"][0]
    assert (table["rows_added"], table["rows_updated"], table["rows_unchanged"]) == (0, 1, 1)
    members = Dataset(home, "shop").read("members").set_index("member_id")
    assert members.loc["m1", "city"] == "Hangzhou"


def test_parquet_and_gzipped_csv_import_by_extension(home: StateHome, tmp_path: Path) -> None:
    parquet = tmp_path / "orders.parquet"
    pd.DataFrame(
        {"member_id": [1.0, 2.0], "ts": pd.to_datetime(["2024-01-01", "2024-01-02"]), "amount": [1.5, 2.5]}
    ).to_parquet(parquet)
    gz = tmp_path / "orders.csv.gz"
    pd.DataFrame({"member_id": ["3"], "ts": ["2024-01-03"], "amount": ["4"]}).to_csv(gz, index=False)
    import_json("-d", "shop", "-t", "orders", "-i", str(parquet))
    import_json("-d", "shop", "-t", "orders", "-i", str(gz))
    orders = Dataset(home, "shop").read("orders")
    assert list(orders["member_id"]) == ["1", "2", "3"]
    assert list(orders["amount"]) == [1.5, 2.5, 4.0]


def test_a_line_with_the_wrong_number_of_fields_is_set_aside_by_row(home: StateHome, tmp_path: Path) -> None:
    path = write_text(
        tmp_path / "tx.csv", "customer,date,amount\nc1,2024-01-03,1\nc2,2024-01-04,2,oops\nc3,2024-01-05,3\n"
    )
    table = import_json(
        "-d", "shop", "-t", "orders", "-i", str(path), "--map", "member_id=customer", "--map", "ts=date"
    )["tables"][0]
    assert (table["rows_read"], table["rows_added"], table["rows_quarantined"]) == (3, 2, 1)
    quarantine = Dataset(home, "shop").read_quarantine("orders")
    assert quarantine["row"].tolist() == [2]
    assert quarantine["reason"].iloc[0] == "line has 4 fields, the header has 3"


@pytest.mark.parametrize(
    ("content", "extra_args", "message"),
    [
        (None, (), "no such file"),
        (b"customer,date,amount\nc1,2024-01-03,\xe9\xe9\n", (), "not valid utf-8 text"),
        (b"", (), "the file is empty"),
        (b"c1,2024-01-03,12.5\nc2,2024-01-04,8\n", (), "looks like data, not column names"),
        (TRANSACTIONS.encode(), ("--map", "member_id=CustomerID"), "column 'CustomerID' not found"),
        (TRANSACTIONS.encode(), ("--map", "member_id=customer"), "missing ts"),
        (TRANSACTIONS.encode(), ("--map", "member_id"), "expected CANONICAL=VALUE"),
        (TRANSACTIONS.encode(), ("--map", "shopper=customer"), "'shopper' is not a column of orders"),
    ],
    ids=[
        "missing",
        "encoding",
        "empty",
        "no-header",
        "mapped-absent",
        "required-absent",
        "bad-map",
        "unknown",
    ],
)
def test_unreadable_input_stops_with_one_clear_message_and_exit_2(
    home: StateHome, tmp_path: Path, content: bytes | None, extra_args: tuple[str, ...], message: str
) -> None:
    path = tmp_path / "tx.csv"
    if content is not None:
        path.write_bytes(content)
    code, out, err = run("data", "import", "-d", "shop", "-t", "orders", "-i", str(path), *extra_args)
    assert code == 2
    last_line = err.strip().splitlines()[-1]
    assert last_line.startswith("error: ") and message in last_line
    assert "Traceback" not in err + out
    assert not Dataset(home, "shop").has("orders")


def test_an_unknown_file_type_and_a_bad_dataset_name_are_refused(home: StateHome, tmp_path: Path) -> None:
    path = write_text(tmp_path / "tx.xlsx", "x")
    code, _, err = run("data", "import", "-d", "shop", "-t", "orders", "-i", str(path))
    assert code == 2 and "unknown file type .xlsx" in err
    code, _, err = run("data", "import", "-d", "../escape", "-t", "orders", "-i", str(path))
    assert code == 2 and "dataset name '../escape' is not allowed" in err


def test_describe_reports_counts_and_quarantine(home: StateHome, tmp_path: Path) -> None:
    path = write_text(tmp_path / "tx.csv", TRANSACTIONS + ",2024-03-01,4\n")
    import_json("-d", "shop", "-t", "orders", "-i", str(path), "--map", "member_id=customer", "--map", "ts=date")
    code, out, err = run("data", "describe", "-d", "shop", "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["rows"] == {"orders": 3}
    assert (info["members"], info["guest_order_lines"]) == (2, 1)
    assert (info["first_event"], info["last_event"]) == ("2024-01-03 00:00:00", "2024-03-01 00:00:00")
    assert info["quarantined"] == {"orders": {"amount: negative where not a return": 1}}
    code, _, err = run("data", "describe", "-d", "nope")
    assert code == 2 and "dataset 'nope' not found" in err and "known datasets: shop" in err


def test_a_file_in_another_format_is_refused_by_name(home: StateHome, tmp_path: Path) -> None:
    path = write_text(tmp_path / "x.csv", "InvoiceNo,StockCode\n1,2\n")
    with pytest.raises(DataError, match="not in the Online Retail format: missing column Description"):
        import_online_retail(Dataset(home, "r"), path)


def test_an_import_interrupted_half_way_leaves_the_previous_dataset_readable(
    home: StateHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from features.dataset.importers import import_file

    first = write_text(tmp_path / "tx.csv", TRANSACTIONS)
    mapping = {"member_id": "customer", "ts": "date"}
    dataset = Dataset(home, "shop")
    import_file(dataset, "orders", first, mapping)
    before = dataset.read("orders")
    real_to_parquet = pd.DataFrame.to_parquet

    def crash_half_way(frame: pd.DataFrame, path: Path, **kwargs: object) -> None:
        real_to_parquet(frame, path, **kwargs)
        Path(path).write_bytes(Path(path).read_bytes()[: Path(path).stat().st_size // 2])  # a torn write
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", crash_half_way)
    more = write_text(tmp_path / "more.csv", "customer,date,amount\nc7,2024-03-01,5\n")
    with pytest.raises(OSError, match="disk full"):
        import_file(dataset, "orders", more, mapping)
    monkeypatch.undo()
    pd.testing.assert_frame_equal(dataset.read("orders"), before)  # the previous table, whole
    assert not list(dataset.path.rglob("*.tmp"))  # and no half-written file left beside it


PRODUCTS_CSV = (
    "sku,title,brand,labels,launched\n"
    "P1,Linen shirt,Acme,Summer| linen |summer,2024-05-01\n"
    "P2,Wool coat,Nordic,,2024-10-01\n"
    "P3,Mug,Acme,kitchen,next week\n"
)


def test_the_catalogue_takes_brand_tags_and_launch_dates_and_a_reimport_updates_by_id(
    home: StateHome, tmp_path: Path
) -> None:
    # given: products with a brand, |-separated tags and a launch date; one launch date is not a date
    mapping = [
        "--map",
        "product_id=sku",
        "--map",
        "name=title",
        "--map",
        "tags=labels",
        "--map",
        "published_at=launched",
    ]
    path = write_text(tmp_path / "products.csv", PRODUCTS_CSV)
    summary = import_json("--dataset", "shop", "--table", "products", *mapping, "--input", str(path))
    # then: the good rows are kept typed (tags a list: lower-cased, trimmed, each once), the bad one is named
    (table,) = summary["tables"]
    assert (table["rows_added"], table["rows_quarantined"]) == (2, 1)
    dataset = Dataset(home, "shop")
    products = dataset.read("products").set_index("product_id")
    assert list(products.loc["P1", "tags"]) == ["summer", "linen"] and products.loc["P2", "tags"] is None
    assert products.loc["P1", "brand"] == "acme" and products.loc["P1", "published_at"] == pd.Timestamp("2024-05-01")
    quarantined = dataset.read_quarantine("products")
    assert list(quarantined[["row", "field", "reason"]].itertuples(index=False, name=None)) == [
        (3, "published_at", "unparseable timestamp")
    ]
    # when: the same file again changes nothing; a new version of a product replaces it (an upsert by id)
    again = import_json("--dataset", "shop", "--table", "products", *mapping, "--input", str(path))
    assert (again["tables"][0]["rows_added"], again["tables"][0]["rows_updated"]) == (0, 0)
    newer = write_text(tmp_path / "p1.csv", "sku,labels\nP1,autumn|linen\n")
    columns = ["--map", "product_id=sku", "--map", "tags=labels"]
    updated = import_json("--dataset", "shop", "--table", "products", *columns, "--input", str(newer))
    assert (updated["tables"][0]["rows_added"], updated["tables"][0]["rows_updated"]) == (0, 1)
    assert list(dataset.read("products").set_index("product_id").loc["P1", "tags"]) == ["autumn", "linen"]


def test_contents_take_a_title_an_author_and_tags_from_parquet_lists(home: StateHome, tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "content_id": ["C1", "C2"],
            "content_type": ["knowledge", "scene"],
            "title": ["How to brew", "Autumn walk"],
            "author_id": ["A7", "A9"],
            "tags": [["Coffee", "brewing"], []],
        }
    )
    frame.to_parquet(tmp_path / "contents.parquet")
    import_json("--dataset", "shop", "--table", "contents", "--input", str(tmp_path / "contents.parquet"))
    contents = Dataset(home, "shop").read("contents").set_index("content_id")
    assert list(contents.loc["C1", "tags"]) == ["coffee", "brewing"] and contents.loc["C2", "tags"] is None
    assert (contents.loc["C1", "title"], contents.loc["C1", "author_id"]) == ("How to brew", "A7")
