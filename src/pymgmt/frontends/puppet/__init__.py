"""Puppet code as input: Puppet compiles the catalog, pymgmt runs it.

The design articles want existing Puppet code -- mostly plumbing, packages
and templates -- to run on this engine, so that a site can migrate bit by
bit. As in mgmt, Puppet itself is the compiler (no hand-written Puppet
parser: the language is large and only Puppet knows it exactly): ``puppet
catalog find --terminus compiler`` turns a manifest into a JSON catalog of
resources, containment and relationships, and pymgmt translates that.

The rooms:

* `catalog` runs Puppet's compiler and reads its JSON, strictly, into
  `Catalog` (Puppet's errors come back with the manifest's file and line);
* `translate` maps each Puppet resource onto a pymgmt kind, flattens
  classes, defined types and stages into edges between real resources the
  way Puppet orders them, and lists -- with file and line -- every type or
  parameter it cannot carry over, so that nothing is dropped silently;
* `render` prints a translation as a YAML graph a user can read and keep;
* ``ruby/`` is pymgmt's storeconfigs backend for Puppet (on its RUBYLIB):
  it tells pymgmt what the manifest exports (``@@``) and collects
  (``<<| |>>``), which `translate` maps onto the etcd World's exports and
  ``collect:`` entries.
"""
