def test_template_has_a_complete_release(project):
    res = project.ok("list", "--json")
    rows = res.json()
    assert [r["tag"] for r in rows] == ["fraud-detector@v1.0.0"]
    assert rows[0]["complete"] and rows[0]["stage"] == "registered"
    assert "refs/tags/fraud-detector@v1.0.0" in project.git("ls-remote", "--tags", str(project.origin))
