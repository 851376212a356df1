"""The operator page in a real headless Chromium (Debian's), against the real server."""

from __future__ import annotations

from pathlib import Path

import pytest
from services import ThreadedServer, chromium_driver

from castinspect.inference.predict import Predictor
from castinspect.station.app import create_app
from castinspect.station.log import InspectionLog

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "castinspect" / "assets" / "samples"


@pytest.fixture
def station(tmp_path):
    log = InspectionLog.open(tmp_path / "log.db")
    server = ThreadedServer(create_app(Predictor.load(), log))
    driver = chromium_driver()
    yield server, driver, log
    driver.quit()
    server.stop()
    log.close()


def test_upload_shows_verdict_heatmap_and_counters(station, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server, driver, log = station
    driver.get(server.url + "/")
    wait = WebDriverWait(driver, 30)
    wait.until(lambda d: "threshold" in d.find_element(By.ID, "model").text)
    photo = sorted((SAMPLES / "def_front").iterdir())[0]
    driver.find_element(By.ID, "file-input").send_keys(str(photo))
    verdict = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results .verdict"))[0]
    assert verdict.text in ("OK", "NG", "REVIEW")
    heatmap = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results img.heatmap"))[0]
    wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", heatmap) == 644)
    (row,), total = log.page()
    assert total == 1 and {"OK": "ok", "NG": "defective", "REVIEW": "review"}[verdict.text] == row["decision"]
    # the live list and counters pick the inspection up
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#recent tbody tr")) == 1)
    counts = [int(driver.find_element(By.ID, i).text) for i in ("count-ok", "count-ng", "count-review")]
    assert sum(counts) == 1

    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    driver.find_element(By.ID, "file-input").send_keys(str(bad))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results .verdict.error"))
    card = driver.find_elements(By.CSS_SELECTOR, "#results .card")[0]
    assert "notes.jpg" in card.text and "not an image" in card.text
    assert log.page()[1] == 1


def test_a_guarded_station_asks_for_its_token(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with InspectionLog.open(tmp_path / "log.db") as log:
        server = ThreadedServer(create_app(Predictor.load(), log, token="line-7-secret-token"))
        driver = chromium_driver()
        try:
            driver.get(server.url + "/")
            wait = WebDriverWait(driver, 30)
            box = driver.find_element(By.ID, "token-box")
            wait.until(lambda d: box.is_displayed())  # the API said 401
            driver.find_element(By.ID, "token").send_keys("line-7-secret-token")
            driver.find_element(By.ID, "token-save").click()
            wait.until(lambda d: "threshold" in d.find_element(By.ID, "model").text)
            photo = sorted((SAMPLES / "ok_front").iterdir())[0]
            driver.find_element(By.ID, "file-input").send_keys(str(photo))
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results .verdict:not(.error)"))
            assert log.page()[1] == 1
        finally:
            driver.quit()
            server.stop()


def test_the_page_shows_the_drift_banner(tmp_path):
    import cv2
    import numpy as np
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from castinspect.station.drift import DriftSettings

    log = InspectionLog.open(tmp_path / "log.db")
    server = ThreadedServer(create_app(Predictor.load(), log, drift=DriftSettings(window=20, baseline=10, min_window=10)))
    driver = chromium_driver()
    try:
        driver.get(server.url + "/")
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: "threshold" in d.find_element(By.ID, "model").text)
        assert not driver.find_element(By.ID, "drift").is_displayed()  # a quiet line: no banner
        board = (np.indices((300, 300)).sum(axis=0) // 30 % 2 * 200 + 30).astype(np.uint8)  # not a casting
        photos = []
        for i in range(12):
            photos.append(tmp_path / f"board{i}.png")
            cv2.imwrite(str(photos[-1]), board)
        driver.find_element(By.ID, "file-input").send_keys("\n".join(str(p) for p in photos))
        banner = wait.until(lambda d: d.find_element(By.ID, "drift") if "alarm" in
                            d.find_element(By.ID, "drift").get_attribute("class") else None)
        assert banner.is_displayed() and "DRIFT ALARM" in banner.text and "unfamiliar" in banner.text
    finally:
        driver.quit()
        server.stop()
        log.close()


def test_a_borderline_part_is_settled_with_the_keyboard(tmp_path):
    """The review queue end to end: a borderline photo uploaded, shown in the queue with its photo
    and heatmap, confirmed defective with the D key; the counts move, the disposition is in the
    log with who and when; the operator screen then shows the part as NG."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from castinspect.station.access import Tokens, add_token
    from castinspect.station.review import history

    file = tmp_path / "tokens.txt"
    anna = add_token(file, "anna", "operator")
    predictor = Predictor.load(review_band=(0.0, 0.5))  # an OK sample's p(defect) lies in the band
    with InspectionLog.open(tmp_path / "log.db") as log:
        server = ThreadedServer(create_app(predictor, log, tokens=Tokens.of(file=file), store_images=True))
        driver = chromium_driver()
        try:
            driver.get(server.url + "/")
            wait = WebDriverWait(driver, 30)
            wait.until(lambda d: d.find_element(By.ID, "token-box").is_displayed())
            driver.find_element(By.ID, "token").send_keys(anna)
            driver.find_element(By.ID, "token-save").click()
            wait.until(lambda d: "review band 0–0.5" in d.find_element(By.ID, "model").text)
            assert driver.find_element(By.ID, "who").text == "anna (operator)"
            photo = sorted((SAMPLES / "ok_front").iterdir())[0]
            driver.find_element(By.ID, "file-input").send_keys(str(photo))
            wait.until(lambda d: d.find_element(By.ID, "queue-source").text == photo.name)
            explained = driver.find_element(By.ID, "queue-heatmap")  # the photo, its heatmap, the scale
            wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth",
                                                  explained) == 644)
            wait.until(lambda d: d.find_element(By.ID, "count-review").text == "1")
            assert driver.find_element(By.ID, "count-ng").text == "0"
            driver.find_element(By.TAG_NAME, "body").send_keys("d")
            wait.until(lambda d: d.find_element(By.ID, "count-ng").text == "1")
            assert driver.find_element(By.ID, "count-review").text == "0"
            assert driver.find_element(By.ID, "reject-rate").text == "100.0%"
            assert "(none awaiting)" in driver.find_element(By.ID, "queue-count").text
            (row,), _ = log.page()
            (entry,) = history(log, row["id"])
            assert (entry["who"], entry["decision"], entry["label"]) == ("anna", "defective", "def_front")
            assert entry["time"] >= row["time"]

            driver.find_element(By.ID, "operator-on").click()
            tile = driver.find_element(By.ID, "op-tile")
            wait.until(lambda d: tile.text.startswith("NG") and "defective" in tile.get_attribute("class"))
            wait.until(lambda d: d.find_element(By.ID, "op-ng").text == "1")
            assert photo.name in driver.find_element(By.ID, "op-detail").text
            driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
            wait.until(lambda d: not tile.is_displayed())
        finally:
            driver.quit()
            server.stop()


def test_a_station_with_an_anomaly_model_shows_both_scores(tmp_path):
    import cv2
    import numpy as np
    from conftest import make_casting
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from castinspect.core.config import Config
    from castinspect.training.anomaly import fit_anomaly

    good = tmp_path / "good"  # synthetic good parts: the real sample departs from them
    good.mkdir()
    rng = np.random.default_rng(2)
    for i in range(60):
        cv2.imwrite(str(good / f"part{i:02d}.png"), make_casting(rng, None))
    cfg = Config()
    cfg.anomaly.input_size, cfg.anomaly.normalize, cfg.anomaly.bank = 96, "imagenet", 300
    anomaly = Predictor(fit_anomaly(cfg, good, tmp_path / "anomaly")[0].checkpoint)
    log = InspectionLog.open(tmp_path / "log.db")
    server = ThreadedServer(create_app(Predictor.load(anomaly=anomaly), log))
    driver = chromium_driver()
    try:
        driver.get(server.url + "/")
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: "threshold" in d.find_element(By.ID, "model").text)
        driver.find_element(By.ID, "file-input").send_keys(str(sorted((SAMPLES / "ok_front").iterdir())[0]))
        card = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results .card"))[0]
        (row,), _ = log.page()
        assert f"anomaly {row['anomaly']:.3f}" in card.text and f"p(defect) {row['p_defect']:.3f}" in card.text
        assert row["decision"] == "defective" and "anomalous" in card.text  # unlike the good parts it knows
    finally:
        driver.quit()
        server.stop()
        log.close()
