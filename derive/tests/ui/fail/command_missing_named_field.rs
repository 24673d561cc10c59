use factum::Command;

#[derive(Command)]
#[command(id = order_id)]
enum C {
    Place { order_id: String },
    Cancel { id: String },
}

fn main() {}
