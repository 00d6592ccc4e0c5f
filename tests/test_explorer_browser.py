"""The explorer page in a real browser: headless Debian chromium driven by Selenium through Debian's chromedriver
(nothing is downloaded). A user is picked in the search box; the map, the profile and the lists must show that
user's rows."""
import os
import shutil

import pytest
from conftest import serving
from starlette.testclient import TestClient

from kwai_assets.io.warehouse import Warehouse
from kwai_assets.service.app import create_app
from kwai_assets.service.lookup import WarehouseLookup

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    if os.environ.get("CI"):
        raise RuntimeError("CI needs Debian's chromium and chromium-driver (.ci/run installs them)")
    pytest.skip("Debian's chromium and chromium-driver are not installed (apt-get install chromium "
                "chromium-driver)", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1100",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    yield driver
    driver.quit()


def _pick(browser, base: str, user: str) -> None:
    browser.get(f"{base}/explorer")
    box = browser.find_element(By.ID, "user")
    box.send_keys(user)
    browser.find_element(By.ID, "show").click()
    WebDriverWait(browser, 20).until(EC.visibility_of_element_located((By.ID, "view")))


def _items(browser, selector: str) -> list[str]:
    return [e.get_attribute("data-item") for e in browser.find_elements(By.CSS_SELECTOR, selector)]


def test_the_page_shows_the_picked_users_places_profile_and_lists(browser, served, tmp_path):
    wh = Warehouse(served.settings.home)
    user_idx = int(wh.read("recommendations")["user_idx"].iloc[0])
    maps = wh.read("id_maps")
    user = maps[(maps.entity == "user") & (maps.idx == user_idx)]["raw_id"].item()
    expected = TestClient(served.app).get(f"/users/{user}/explorer").json()
    with serving(served.app) as base:
        _pick(browser, base, user)
        browser.save_screenshot(str(tmp_path / "explorer.png"))
        dots = browser.find_elements(By.CSS_SELECTOR, "#map circle.train")
        assert dots and {d.get_attribute("data-poi") for d in dots} <= {p["poi"] for p in expected["places"]}
        beyond = browser.find_element(By.ID, "outside").text
        assert len(dots) == len(expected["places"]) or "train places" in beyond
        assert browser.find_elements(By.CSS_SELECTOR, "#map rect.rec")
        assert browser.find_element(By.ID, "profile").text == expected["profile"]["profile"].strip()
        assert _items(browser, "#recommendations tbody tr") == [r["item"] for r in expected["recommendations"]]
        assert _items(browser, "#recommendations tr.hit") == [r["item"] for r in expected["recommendations"]
                                                               if r["in_test"]]
        assert _items(browser, "#test li") == [r["item"] for r in expected["test"]]
        assert _items(browser, "#test li.hit") == [r["item"] for r in expected["test"] if r["served"]]
        for name, rows in expected["channels"].items():
            assert _items(browser, f'[data-channel="{name}"] li') == [r["item"] for r in rows]
        assert browser.find_element(By.ID, "history-panel").is_displayed() is False


def test_without_coordinates_the_map_gives_way_to_the_history(browser, served, tmp_path):
    """A warehouse shaped like MovieLens': no check-ins, no POI rows (and no POI `name` column), items at POI
    "unknown" with a title; the page lists the latest train items by title instead of the map."""
    home = tmp_path / "home"
    shutil.copytree(served.settings.home / "warehouse", home / "warehouse",
                    ignore=shutil.ignore_patterns("checkins.parquet"))
    wh = Warehouse(home)
    pois = wh.read("poi_attributes")
    wh.write(pois.iloc[:0][["poi_id", "n_interactions", "lat", "lon", "category", "has_attributes"]],
             "poi_attributes")
    items = wh.read("item_attributes")
    wh.write(items.assign(poi_id="unknown", title=[f"Film {i}" for i in items["item_id"]]), "item_attributes")
    app = create_app(WarehouseLookup(Warehouse(home)), served.store, "test")
    user_idx = int(wh.read("recommendations")["user_idx"].iloc[1])
    maps = wh.read("id_maps")
    user = maps[(maps.entity == "user") & (maps.idx == user_idx)]["raw_id"].item()
    expected = TestClient(app).get(f"/users/{user}/explorer").json()
    with serving(app) as base:
        _pick(browser, base, user)
        assert not browser.find_element(By.ID, "places-panel").is_displayed()
        assert _items(browser, "#history li") == [r["item"] for r in expected["history"]] != []
        titles = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#history li")]
        assert titles == [f"Film {r['item']}" for r in expected["history"]]
        assert _items(browser, "#recommendations tbody tr") == [r["item"] for r in expected["recommendations"]]


def test_an_unknown_user_is_said_on_the_page(browser, served):
    with serving(served.app) as base:
        browser.get(f"{base}/explorer")
        browser.find_element(By.ID, "user").send_keys("nobody")
        browser.find_element(By.ID, "show").click()
        WebDriverWait(browser, 20).until(EC.text_to_be_present_in_element((By.ID, "status"), "unknown user"))
        assert not browser.find_element(By.ID, "view").is_displayed()
