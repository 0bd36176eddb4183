# Storeconfigs also keeps each node's facts: pymgmt keeps none.
require 'puppet/indirector/code'
require 'pymgmt_store'

class Puppet::Node::Facts::Pymgmt < Puppet::Indirector::Code
  include PymgmtStore::KeepsNothing
  desc 'pymgmt: keeps no facts.'
end
