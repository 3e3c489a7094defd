worker {}

plugin "Store_Bolt" {}

plugin "-runtime" {}

plugin "" {}
