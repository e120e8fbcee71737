"""``plugin_rows``, the reader of ``alignkit plugins`` that the example-plugin tests share: one
``[kind, name, package]`` per component, whatever headings the listing prints between them."""

import io


def test_headings_header_blank_and_failure_lines_are_no_rows(plugin_rows):
    out = ("kind       name    package       description\n"
           "\n"
           "# training algorithms (a pipeline stage says `optimizer: NAME`)\n"
           "optimizer  dpo     alignkit      Direct Preference Optimization\n"
           "optimizer  kto     alignkit-kto  KTO\n"
           "\n"
           "Stages that sample, label or evaluate:\n"
           "stage      label   alignkit      labels sampled pairs\n"
           "not loaded: broken_pkg (ImportError: no module named x)\n")
    assert plugin_rows(out) == [["optimizer", "dpo", "alignkit"], ["optimizer", "kto", "alignkit-kto"],
                                ["stage", "label", "alignkit"]]


def test_every_row_of_the_real_listing_is_a_registered_component(plugin_rows, registry):
    from alignkit.core.cli import list_plugins

    out = io.StringIO()
    list_plugins(registry, out=out)
    rows = plugin_rows(out.getvalue())
    assert sorted(rows) == sorted([kind, r.entry.name, r.package] for kind, r in registry.all())
